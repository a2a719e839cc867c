//! TEE reports: AMD SEV-SNP, Intel TDX, Azure's HCL reports around them, and the
//! simulated TEE for machines without one.

pub mod azure;
pub mod simulated;
pub mod snp;
pub mod tdx;
pub mod tsm;
