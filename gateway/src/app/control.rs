//! The application's controller as verigated runs it: built once at start from `[app]`
//! and kept across SIGHUP reloads, because a standalone manager owns the application's
//! process and rebuilding it would stop the application. A change to `[app]`,
//! `[app.standalone]` or `max_config_bytes` takes effect only when verigated restarts,
//! and a reload that changes them says so in the log ([`warn_if_changed`]).

use super::{manager_from_config, AnyManager, AppControlSettings, AppController, AppError};
use crate::config::{AppConfig, Config};

/// The application's controller as built at start, with what it was built from.
pub struct AppControl {
    controller: AppController<AnyManager>,
    /// `[app]` and the manager settings it was built from, to tell on reload whether
    /// they changed.
    app: AppConfig,
    settings: AppControlSettings,
}

impl std::fmt::Debug for AppControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppControl")
            .field("app", &self.app)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl AppControl {
    /// The controller of `config`'s `[app]`, or `None` without one. A standalone manager
    /// starts the program here, so this runs inside the tokio runtime.
    pub fn from_config(config: &Config) -> Result<Option<AppControl>, AppError> {
        let Some(app) = &config.app else {
            return Ok(None);
        };
        let settings = &config.control.settings;
        let manager = manager_from_config(app, settings)?;
        Ok(Some(AppControl {
            controller: AppController::new(
                manager,
                app.app_storage.clone(),
                settings.max_config_bytes,
            ),
            app: app.clone(),
            settings: settings.clone(),
        }))
    }

    /// The controller.
    pub fn controller(&self) -> &AppController<AnyManager> {
        &self.controller
    }

    /// The size limit of `init` that this controller enforces; the body is read up to it.
    pub fn max_config_bytes(&self) -> usize {
        self.settings.max_config_bytes
    }

    /// Whether `config` asks for app control other than the one this was built from.
    fn differs_from(&self, config: &Config) -> bool {
        config.app.as_ref() != Some(&self.app) || config.control.settings != self.settings
    }
}

/// Logs, after a reload to `config`, that `[app]` changes wait for a restart.
pub fn warn_if_changed(current: Option<&AppControl>, config: &Config) {
    let changed = match current {
        Some(control) => control.differs_from(config),
        None => config.app.is_some(),
    };
    if changed {
        tracing::warn!(
            target: "verigated::app",
            "[app] or its control settings changed: app control keeps the settings it started with until verigated restarts (the application keeps running)"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(app: &str) -> Config {
        let text =
            format!("[gateway]\nlisten = [\"127.0.0.1:8443\"]\ndomain = \"vm.example.com\"\n{app}");
        Config::parse(&text, Path::new("/nonexistent-dir/verigated.toml")).unwrap()
    }

    const SUPERVISOR: &str = "[app]\nservice_type = \"supervisor\"\nservice_name = \"my_app\"\n";

    #[test]
    fn reload_changes_are_told_by_value() {
        // A supervisor manager only stores its settings: nothing is started here.
        let control = AppControl::from_config(&config(SUPERVISOR))
            .unwrap()
            .unwrap();
        assert_eq!(
            control.max_config_bytes(),
            crate::config::control::DEFAULT_MAX_CONFIG_BYTES
        );
        assert!(!control.differs_from(&config(SUPERVISOR)));
        // The credentials follow reloads; they are not app control's settings.
        assert!(!control.differs_from(&config(&format!(
            "[api]\nadmin_token_sha256 = [\"{}\"]\n{SUPERVISOR}",
            "ab".repeat(32)
        ))));
        for changed in [
            "[app]\nservice_type = \"supervisor\"\nservice_name = \"other_app\"\n".to_string(),
            format!("[api]\nmax_config_bytes = 4096\n{SUPERVISOR}"),
            format!("{SUPERVISOR}supervisor_socket = \"/run/supervisor.sock\"\n"),
            String::new(),
        ] {
            assert!(control.differs_from(&config(&changed)), "{changed}");
        }
        assert!(AppControl::from_config(&config("")).unwrap().is_none());
    }
}
