//! TPM NV indices (feature `tpm-collect`), as Azure's paravisor vTPM uses them
//! (ARCHITECTURE.md, "Azure confidential VMs"): the HCL report at
//! [`AZURE_HCL_REPORT_INDEX`], the user-data a guest writes at
//! [`AZURE_USER_DATA_INDEX`]. Every operation authorizes as the owner with a password
//! session (empty owner password, as on Azure), which occupies no session slot.

use std::io::Write as _;

use tss_esapi::abstraction::nv::{self, NvOpenOptions};
use tss_esapi::attributes::NvIndexAttributesBuilder;
use tss_esapi::handles::NvIndexTpmHandle;
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::resource_handles::NvAuth;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::NvPublicBuilder;

use super::collect::{tpm, CollectError, Tpm};

/// Where the paravisor keeps the HCL report.
pub const AZURE_HCL_REPORT_INDEX: u32 = 0x0140_0001;
/// Where a guest writes the 64 bytes the next HCL report carries as `user-data`.
pub const AZURE_USER_DATA_INDEX: u32 = 0x0140_0002;
/// Where Azure persists the vTPM attestation key (`HCLAkPub`).
pub const AZURE_AK_HANDLE: u32 = 0x8100_0003;

fn index(handle: u32) -> Result<NvIndexTpmHandle, CollectError> {
    NvIndexTpmHandle::new(handle).map_err(tpm("naming the NV index"))
}

impl Tpm {
    /// Whether NV index `handle` is defined.
    pub fn nv_exists(&mut self, handle: u32) -> Result<bool, CollectError> {
        self.handle_exists(handle)
    }

    /// Defines NV index `handle` of `size` bytes, readable and writable by the owner.
    pub fn nv_define(&mut self, handle: u32, size: usize) -> Result<(), CollectError> {
        let attributes = NvIndexAttributesBuilder::new()
            .with_owner_write(true)
            .with_owner_read(true)
            .build()
            .map_err(tpm("NV index attributes"))?;
        let public = NvPublicBuilder::new()
            .with_nv_index(index(handle)?)
            .with_index_name_algorithm(HashingAlgorithm::Sha256)
            .with_index_attributes(attributes)
            .with_data_area_size(size)
            .build()
            .map_err(tpm("NV index public area"))?;
        let created = self
            .ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.nv_define_space(
                    tss_esapi::interface_types::resource_handles::Provision::Owner,
                    None,
                    public,
                )
            })
            .map_err(tpm("defining the NV index"))?;
        let mut object = tss_esapi::handles::ObjectHandle::from(created);
        self.ctx
            .tr_close(&mut object)
            .map_err(tpm("closing the NV index handle"))
    }

    /// Reads all of NV index `handle`.
    pub fn nv_read(&mut self, handle: u32) -> Result<Vec<u8>, CollectError> {
        let index = index(handle)?;
        self.ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                nv::read_full(ctx, NvAuth::Owner, index)
            })
            .map_err(tpm("reading the NV index"))
    }

    /// Writes `data` at the start of NV index `handle` (in chunks the TPM accepts).
    pub fn nv_write(&mut self, handle: u32, data: &[u8]) -> Result<(), CollectError> {
        let index = index(handle)?;
        self.ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                let mut rw = NvOpenOptions::ExistingIndex {
                    nv_index_handle: index,
                    auth_handle: NvAuth::Owner,
                }
                .open(ctx)?;
                rw.write_all(data).map_err(|_| {
                    tss_esapi::Error::WrapperError(tss_esapi::WrapperErrorKind::InvalidParam)
                })
            })
            .map_err(tpm("writing the NV index"))
    }
}
