//! TEE reports: AMD SEV-SNP, Intel TDX, and the simulated TEE for machines without one.

pub mod simulated;
pub mod snp;
pub mod tdx;
pub mod tsm;
