//! TODO(owner): see DESIGN.md.
