//! AMD's Key Distribution Service (KDS) for an SEV-SNP report without certificates from
//! the host: the request paths of the VCEK (by product, chip id and reported TCB) and of
//! the product's ASK/ARK chain. Pure: the gateway fetches, this names.
//!
//! Nothing fetched is trusted: the verifier chains the VCEK to the pinned ARK of its
//! product ([`super::verify`]). A VLEK is not served to anonymous callers; it must come
//! from the host's certificate table.

use super::{Product, SnpReport, TcbVersion};

/// AMD's KDS.
pub const AMD_KDS_URL: &str = "https://kdsintf.amd.com";

impl Product {
    /// The product's name in KDS paths.
    pub fn kds_name(self) -> &'static str {
        match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        }
    }
}

/// The products a report may come from, most likely first: the CPUID fields of a v3+
/// report name it; a v2 report does not, and its chip id only separates Turin (8-byte
/// id) from Milan and Genoa (64 bytes), so those two are both tried.
pub fn product_candidates(report: &SnpReport) -> Vec<Product> {
    if let Ok(Some(p)) = report.cpuid_product() {
        return vec![p];
    }
    let turin_like = report
        .chip_id
        .get(8..)
        .is_some_and(|r| r.iter().all(|&b| b == 0));
    if turin_like {
        vec![Product::Turin]
    } else {
        vec![Product::Milan, Product::Genoa]
    }
}

/// What names one VCEK: the product, the chip and the TCB it certifies. Also the cache
/// key of the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcekId {
    /// The product whose KDS path is asked.
    pub product: Product,
    /// The chip id as KDS spells it (lowercase hex; 8 bytes for Turin, 64 otherwise).
    pub hwid: String,
    /// The reported TCB, decoded for the product.
    pub tcb: TcbVersion,
}

/// Why no VCEK can be asked for.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KdsError {
    /// The report's chip id is masked (MASK_CHIP_ID): KDS cannot be asked by it.
    #[error("the report's chip id is masked, so KDS cannot be asked for its VCEK")]
    ChipIdMasked,
    /// The report is signed by a VLEK, which KDS serves only to the cloud provider.
    #[error("the report is signed by a VLEK, which only the host's certificate table provides")]
    Vlek,
}

impl VcekId {
    /// The VCEK of `report` for `product`.
    pub fn of(report: &SnpReport, product: Product) -> Result<VcekId, KdsError> {
        if report.signing_key == 1 {
            return Err(KdsError::Vlek);
        }
        if report.mask_chip_key || report.chip_id.iter().all(|&b| b == 0) {
            return Err(KdsError::ChipIdMasked);
        }
        let id_len = if product == Product::Turin { 8 } else { 64 };
        let hwid = hex::encode(report.chip_id.get(..id_len).unwrap_or_default());
        Ok(VcekId {
            product,
            hwid,
            tcb: TcbVersion::decode(report.reported_tcb, product),
        })
    }

    /// `/vcek/v1/{product}/{hwid}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..` (and
    /// `fmcSPL` first on Turin).
    pub fn vcek_path(&self) -> String {
        let t = &self.tcb;
        let fmc = t.fmc.map(|f| format!("fmcSPL={f}&")).unwrap_or_default();
        format!(
            "/vcek/v1/{}/{}?{fmc}blSPL={}&teeSPL={}&snpSPL={}&ucodeSPL={}",
            self.product.kds_name(),
            self.hwid,
            t.bootloader,
            t.tee,
            t.snp,
            t.microcode
        )
    }

    /// `/vcek/v1/{product}/cert_chain`: the ASK then the ARK, PEM.
    pub fn chain_path(&self) -> String {
        format!("/vcek/v1/{}/cert_chain", self.product.kds_name())
    }

    /// A file name for the cache: product, chip and TCB.
    pub fn cache_key(&self) -> String {
        let t = &self.tcb;
        format!(
            "{}-{}-{}-{}-{}-{}-{}",
            self.product.kds_name().to_ascii_lowercase(),
            self.hwid,
            t.fmc.unwrap_or(0),
            t.bootloader,
            t.tee,
            t.snp,
            t.microcode
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn milan_report() -> Option<SnpReport> {
        let dir = testkit::evidence::dir("snp")?;
        let bytes = std::fs::read(dir.join("milan-report.bin")).ok()?;
        super::super::parse_report(&bytes).ok()
    }

    #[test]
    fn milan_paths_are_the_kds_shapes() {
        let Some(report) = milan_report() else { return };
        assert_eq!(
            product_candidates(&report),
            vec![Product::Milan, Product::Genoa]
        );
        let id = VcekId::of(&report, Product::Milan).unwrap();
        assert_eq!(id.hwid.len(), 128);
        let path = id.vcek_path();
        assert!(
            path.starts_with(&format!("/vcek/v1/Milan/{}?blSPL=", id.hwid)),
            "{path}"
        );
        assert!(
            path.contains("&teeSPL=") && path.contains("&snpSPL="),
            "{path}"
        );
        assert!(
            path.contains("&ucodeSPL=") && !path.contains("fmcSPL"),
            "{path}"
        );
        assert_eq!(id.chain_path(), "/vcek/v1/Milan/cert_chain");
        assert!(id.cache_key().starts_with("milan-"));
    }

    #[test]
    fn masked_chips_and_vleks_cannot_ask_kds() {
        let Some(mut report) = milan_report() else {
            return;
        };
        report.signing_key = 1;
        assert_eq!(VcekId::of(&report, Product::Milan), Err(KdsError::Vlek));
        report.signing_key = 0;
        report.chip_id = [0; 64];
        assert_eq!(
            VcekId::of(&report, Product::Milan),
            Err(KdsError::ChipIdMasked)
        );
        report.chip_id[0] = 1;
        assert_eq!(product_candidates(&report), vec![Product::Turin]);
        let id = VcekId::of(&report, Product::Turin).unwrap();
        assert_eq!(id.hwid, "0100000000000000");
        assert!(id.vcek_path().contains("?fmcSPL="));
    }
}
