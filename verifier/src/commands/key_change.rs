//! `--allow-key-change`, shared by `verify` and `app`: a snapshot pins each name's
//! public key, so a renewal that keeps the key passes without it, and only a new key
//! needs it. `--allow-certificate-change`, its name from before key pins, stays as an
//! alias that warns.

/// The flags that accept a manifest key differing from the snapshot's.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KeyChangeArgs {
    /// Accept a public key that changed since the snapshot (a certificate renewed with a
    /// new key), as long as the VM attests its certificate. A renewal that keeps the key
    /// (certbot --reuse-key) passes without this flag.
    #[arg(long, global = true)]
    pub allow_key_change: bool,

    /// Deprecated alias of --allow-key-change (snapshots pin keys now, not certificates).
    #[arg(long, global = true, hide = true)]
    pub allow_certificate_change: bool,
}

impl KeyChangeArgs {
    /// Whether a key change is accepted; warns on stderr when the old name was used.
    pub fn allowed(&self) -> bool {
        if self.allow_certificate_change {
            eprintln!(
                "warning: --allow-certificate-change is deprecated: snapshots pin keys, so a \
                 renewal that keeps its key passes without a flag; it now means --allow-key-change"
            );
        }
        self.allow_key_change || self.allow_certificate_change
    }
}
