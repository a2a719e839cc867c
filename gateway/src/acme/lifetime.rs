//! When the own certificate is due for an order: at once when no CA issued it (the
//! self-signed certificate of the first start, same key), else once less than
//! `renew_before` of its validity is left.

use std::time::{Duration, SystemTime};

use x509_cert::der::Decode as _;

/// What the renewal task needs of a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// The end of its validity.
    pub not_after: SystemTime,
    /// Issuer and subject are the same name: verigated's own bootstrap certificate.
    pub self_issued: bool,
}

/// When to order next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Now, for the reason given (for the log).
    Now(&'static str),
    /// Not before this moment.
    At(SystemTime),
}

impl Lifetime {
    /// Reads a DER certificate; the error says what the parser found.
    pub fn of(der: &[u8]) -> Result<Lifetime, String> {
        let cert = x509_cert::Certificate::from_der(der).map_err(|e| e.to_string())?;
        let tbs = &cert.tbs_certificate;
        Ok(Lifetime {
            not_after: tbs.validity.not_after.to_system_time(),
            self_issued: tbs.issuer == tbs.subject,
        })
    }

    /// When a certificate with this lifetime is due, with `renew_before` as threshold.
    pub fn due(&self, renew_before: Duration, now: SystemTime) -> Due {
        if self.self_issued {
            return Due::Now("the certificate in use is self-signed, not from the CA");
        }
        match self.not_after.checked_sub(renew_before) {
            Some(at) if at > now => Due::At(at),
            _ => Due::Now("less than renew_before of its validity is left"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_issued(days: i64) -> Vec<u8> {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "test CA");
        ca.distinguished_name = dn;
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut leaf = rcgen::CertificateParams::new(vec!["vm.example.com".into()]).unwrap();
        let now = time::OffsetDateTime::now_utc();
        leaf.not_before = now - time::Duration::days(1);
        leaf.not_after = now + time::Duration::days(days);
        leaf.signed_by(&key, &ca_cert, &ca_key)
            .unwrap()
            .der()
            .to_vec()
    }

    #[test]
    fn self_signed_is_due_at_once() {
        let (pem, _) = crate::certificate::generate("vm.example.com", "host").unwrap();
        let der = rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let l = Lifetime::of(&der).unwrap();
        assert!(l.self_issued);
        assert!(matches!(
            l.due(Duration::from_secs(1), SystemTime::now()),
            Due::Now(_)
        ));
    }

    #[test]
    fn ca_issued_is_due_renew_before_its_end() {
        let l = Lifetime::of(&ca_issued(90)).unwrap();
        assert!(!l.self_issued);
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        match l.due(30 * day, now) {
            Due::At(at) => {
                let wait = at.duration_since(now).unwrap();
                assert!(wait > 59 * day && wait <= 60 * day, "{wait:?}");
            }
            Due::Now(why) => panic!("due now: {why}"),
        }
        assert!(matches!(l.due(91 * day, now), Due::Now(_)));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Lifetime::of(b"not a certificate").is_err());
        assert!(Lifetime::of(&[]).is_err());
    }
}
