//! One ACME order for `gateway.domain` (RFC 8555 §7.4) through instant-acme: the account
//! (created once, its credentials kept in `<data_dir>/acme/account.json`, mode 0600),
//! the TLS-ALPN-01 challenge answered by [`Challenges`], a CSR signed with the
//! certificate's key (never sent anywhere), and the downloaded chain.

use std::path::{Path, PathBuf};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, ExternalAccountKey,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use serde::{Deserialize, Serialize};

use super::challenge::Challenges;
use super::http::AcmeHttp;
use super::AcmeError;
use crate::config::acme::{read_eab_key, AcmeSettings};

/// Where the account's credentials are kept, under the data dir.
pub const ACCOUNT_FILE: &str = "acme/account.json";

/// The account file: the credentials and the directory they belong to, so that a new
/// `directory` makes a new account instead of sending the old one's key elsewhere.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// What an order needs besides the settings.
pub struct OrderInputs<'a> {
    /// `gateway.domain`.
    pub domain: &'a str,
    /// The certificate's key: `gateway.ssl_private_key`, or a new one with `rotate_key`.
    pub key: &'a rcgen::KeyPair,
    /// `gateway.data_dir`.
    pub data_dir: &'a Path,
    /// Where the challenge certificate is published for the listener.
    pub challenges: &'a Challenges,
}

/// Runs one order to its end; returns the issued chain (PEM, leaf first).
pub async fn issue(settings: &AcmeSettings, inputs: &OrderInputs<'_>) -> Result<String, AcmeError> {
    let http = AcmeHttp::new(settings.ca_bundle.as_deref())?;
    let account = account(settings, inputs.data_dir, http).await?;
    let identifiers = [Identifier::Dns(inputs.domain.to_string())];
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    let published = Published {
        challenges: inputs.challenges,
        domain: inputs.domain,
    };
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization?;
        match authorization.status {
            AuthorizationStatus::Pending => {}
            // Reused from an earlier order: nothing to prove.
            AuthorizationStatus::Valid => continue,
            status => return Err(AcmeError::Authorization(format!("{status:?}"))),
        }
        let mut challenge = authorization
            .challenge(ChallengeType::TlsAlpn01)
            .ok_or(AcmeError::NoTlsAlpn01)?;
        let mut digest = [0u8; 32];
        digest.copy_from_slice(challenge.key_authorization().digest().as_ref());
        published.challenges.set(published.domain, digest)?;
        challenge.set_ready().await?;
    }
    let retries = RetryPolicy::new().timeout(settings.order_timeout);
    match order.poll_ready(&retries).await? {
        OrderStatus::Ready => {}
        status => {
            let detail = order
                .state()
                .error
                .as_ref()
                .map(|p| format!(": {p}"))
                .unwrap_or_default();
            return Err(AcmeError::Order(format!("{status:?}{detail}")));
        }
    }
    drop(published);
    order.finalize_csr(&csr(inputs.domain, inputs.key)?).await?;
    Ok(order.poll_certificate(&retries).await?)
}

/// Withdraws the challenge certificate when the order ends, however it ends.
struct Published<'a> {
    challenges: &'a Challenges,
    domain: &'a str,
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        self.challenges.clear(self.domain);
    }
}

/// The account of `settings.directory`: restored from the account file, or created (and
/// saved) when the file is absent or belongs to another directory.
async fn account(
    settings: &AcmeSettings,
    data_dir: &Path,
    http: AcmeHttp,
) -> Result<Account, AcmeError> {
    let path = data_dir.join(ACCOUNT_FILE);
    if let Ok(bytes) = std::fs::read(&path) {
        let stored: StoredAccount = serde_json::from_slice(&bytes)
            .map_err(|e| AcmeError::AccountFile(path.clone(), e.to_string()))?;
        if stored.directory == settings.directory {
            return Ok(Account::builder_with_http(Box::new(http))
                .from_credentials(stored.credentials)
                .await?);
        }
        tracing::info!(
            old = %stored.directory,
            new = %settings.directory,
            "gateway.acme.directory changed: creating an account there"
        );
    }
    let contact: Vec<&str> = settings.contact.iter().map(String::as_str).collect();
    let eab = match &settings.eab {
        Some(eab) => Some(ExternalAccountKey::new(
            eab.kid.clone(),
            &read_eab_key(&eab.hmac_key).map_err(AcmeError::Eab)?,
        )),
        None => None,
    };
    let (account, credentials) = Account::builder_with_http(Box::new(http))
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            settings.directory.clone(),
            eab.as_ref(),
        )
        .await?;
    let stored = StoredAccount {
        directory: settings.directory.clone(),
        credentials,
    };
    let json = serde_json::to_vec_pretty(&stored)
        .map_err(|e| AcmeError::AccountFile(path.clone(), e.to_string()))?;
    save(&path, &json, 0o600)?;
    tracing::info!(account = %account.id(), directory = %settings.directory, "ACME account created");
    Ok(account)
}

/// Reads the certificate's key from `path` (PKCS#8 PEM, as verigated writes it).
pub fn read_key(path: &Path) -> Result<rcgen::KeyPair, AcmeError> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| AcmeError::Key(path.to_path_buf(), e.to_string()))?;
    rcgen::KeyPair::from_pem(&pem).map_err(|e| AcmeError::Key(path.to_path_buf(), e.to_string()))
}

/// A CSR for `domain` signed with `key` (DER).
fn csr(domain: &str, key: &rcgen::KeyPair) -> Result<Vec<u8>, AcmeError> {
    let mut params =
        rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(AcmeError::Csr)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let request = params.serialize_request(key).map_err(AcmeError::Csr)?;
    Ok(request.der().to_vec())
}

/// Writes `bytes` to `path` whole or not at all, creating its folder first.
pub fn save(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AcmeError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| AcmeError::Save(PathBuf::from(dir), e.to_string()))?;
    }
    durable::write(path, bytes, mode)
        .map_err(|e| AcmeError::Save(path.to_path_buf(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings() -> AcmeSettings {
        AcmeSettings {
            // Nothing listens there: a test that reached the network would fail.
            directory: "https://127.0.0.1:1/dir".into(),
            contact: Vec::new(),
            ca_bundle: None,
            renew_before: Duration::from_secs(1),
            check_interval: Duration::from_secs(1),
            retry_backoff: Duration::from_secs(1),
            order_timeout: Duration::from_secs(1),
            rotate_key: false,
            eab: None,
        }
    }

    #[tokio::test]
    async fn a_broken_account_file_is_named_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ACCOUNT_FILE);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"{ not json").unwrap();
        let http = AcmeHttp::new(None).unwrap();
        let e = account(&settings(), dir.path(), http).await.err().unwrap();
        assert!(
            matches!(&e, AcmeError::AccountFile(p, _) if *p == path),
            "{e}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"{ not json");
    }

    #[test]
    fn the_csr_is_signed_with_the_own_key_and_a_bad_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("key.pem");
        let (_, key_pem) = crate::certificate::generate("vm.example.com", "h").unwrap();
        std::fs::write(&key_path, &key_pem).unwrap();
        let key = read_key(&key_path).unwrap();
        let der = csr("vm.example.com", &key).unwrap();
        let public = key.public_key_der();
        assert!(der.windows(public.len()).any(|w| w == public.as_slice()));
        std::fs::write(&key_path, "not a key").unwrap();
        assert!(matches!(read_key(&key_path), Err(AcmeError::Key(..))));
        assert!(matches!(
            read_key(&dir.path().join("absent.pem")),
            Err(AcmeError::Key(..))
        ));
    }
}
