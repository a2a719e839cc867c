//! `verigated`: argument parsing and wiring only; the logic lives in the library.

fn main() {
    eprintln!("verigated: not wired yet");
    std::process::exit(2);
}
