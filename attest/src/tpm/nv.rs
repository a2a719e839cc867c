//! TPM NV indices (feature `tpm-collect`), as Azure's paravisor vTPM uses them
//! (ARCHITECTURE.md, "Azure confidential VMs"): the HCL report at
//! [`AZURE_HCL_REPORT_INDEX`], the user-data a guest writes at
//! [`AZURE_USER_DATA_INDEX`]. Every operation authorizes as the owner with a password
//! session (empty owner password, as on Azure), which occupies no session slot.

use std::io::{Seek as _, SeekFrom, Write as _};

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
pub const AZURE_AK_HANDLE: u32 = crate::tee::azure::HCL_AK_HANDLE;

/// The TPM's own error inside an I/O error of the NV reader-writer (a response code
/// that names the problem), else the I/O error's text cannot be kept: a wrapper error.
fn tss_error(e: std::io::Error) -> tss_esapi::Error {
    let wrapper = || tss_esapi::Error::WrapperError(tss_esapi::WrapperErrorKind::InternalError);
    match e.into_inner() {
        Some(inner) => inner
            .downcast::<tss_esapi::Error>()
            .map_or_else(|_| wrapper(), |t| *t),
        None => wrapper(),
    }
}

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

    /// Writes `data` at the start of NV index `handle` (in chunks the TPM accepts). An
    /// index too small for `data` is refused before anything is written.
    pub fn nv_write(&mut self, handle: u32, data: &[u8]) -> Result<(), CollectError> {
        let index = index(handle)?;
        let size = self
            .ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                let mut rw = NvOpenOptions::ExistingIndex {
                    nv_index_handle: index,
                    auth_handle: NvAuth::Owner,
                }
                .open(ctx)?;
                // The writer knows the index's size: seeking to its end says it.
                let size = rw.seek(SeekFrom::End(0)).map_err(tss_error)?;
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                if size >= data.len() {
                    rw.seek(SeekFrom::Start(0)).map_err(tss_error)?;
                    rw.write_all(data).map_err(tss_error)?;
                }
                Ok(size)
            })
            .map_err(tpm("writing the NV index"))?;
        if size < data.len() {
            return Err(CollectError::NvTooSmall {
                handle,
                size,
                needed: data.len(),
            });
        }
        Ok(())
    }
}

/// How often the HCL report is read back before the user-data is declared not applied.
pub const HCL_READ_ATTEMPTS: u32 = 5;
/// The pause between two reads of the HCL report (a paravisor that refreshes the report
/// after the write returns gets this long, times [`HCL_READ_ATTEMPTS`]).
pub const HCL_READ_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// Why no HCL report carrying the written user-data came back.
#[derive(Debug, thiserror::Error)]
pub enum HclCollectError {
    /// A TPM command failed.
    #[error(transparent)]
    Tpm(#[from] CollectError),
    /// NV index 0x01400001 does not hold an HCL report.
    #[error("NV index {AZURE_HCL_REPORT_INDEX:#010x}: {0}")]
    Hcl(#[from] crate::tee::azure::hcl::HclError),
    /// Its runtime data does not parse.
    #[error("NV index {AZURE_HCL_REPORT_INDEX:#010x}: {0}")]
    Runtime(#[from] crate::tee::azure::runtime::RuntimeError),
    /// The report kept another user-data than the one written: the paravisor did not
    /// refresh it (no paravisor behind the index, or a stuck one).
    #[error(
        "the HCL report in NV index {AZURE_HCL_REPORT_INDEX:#010x} still carries user-data {got} \
         after {attempts} reads, not the {wrote} written to {AZURE_USER_DATA_INDEX:#010x}: \
         the paravisor did not refresh it"
    )]
    UserDataNotApplied {
        /// What was written, hex.
        wrote: String,
        /// What the last report carried, hex.
        got: String,
        /// How many reads were made.
        attempts: u32,
    },
}

impl Tpm {
    /// The HCL report for `user_data`, as Azure's paravisor makes it: writes the 64 bytes
    /// to NV index 0x01400002 (defining it first if it is not, as Azure's own tooling
    /// does), then reads NV index 0x01400001 until its runtime data carries them (up to
    /// [`HCL_READ_ATTEMPTS`] reads). The report is checked for layout and user-data only;
    /// its signature is the verifier's business.
    pub fn azure_hcl_report(&mut self, user_data: &[u8; 64]) -> Result<Vec<u8>, HclCollectError> {
        if !self.nv_exists(AZURE_USER_DATA_INDEX)? {
            self.nv_define(AZURE_USER_DATA_INDEX, user_data.len())?;
        }
        self.nv_write(AZURE_USER_DATA_INDEX, user_data)?;
        let mut got = Vec::new();
        for attempt in 1..=HCL_READ_ATTEMPTS {
            let bytes = self.nv_read(AZURE_HCL_REPORT_INDEX)?;
            let report = crate::tee::azure::hcl::parse(&bytes)?;
            got = crate::tee::azure::runtime::parse(&report.runtime_data)?.user_data;
            if got == user_data {
                return Ok(bytes);
            }
            if attempt < HCL_READ_ATTEMPTS {
                std::thread::sleep(HCL_READ_PAUSE);
            }
        }
        Err(HclCollectError::UserDataNotApplied {
            wrote: hex::encode(user_data),
            got: hex::encode(got),
            attempts: HCL_READ_ATTEMPTS,
        })
    }

    /// What NV index 0x01400001 says about this VM: `None` when the index does not
    /// exist (not an Azure confidential VM), else the hardware its HCL report names.
    pub fn azure_hardware(
        &mut self,
    ) -> Result<Option<crate::tee::azure::hcl::HardwareKind>, HclCollectError> {
        if !self.nv_exists(AZURE_HCL_REPORT_INDEX)? {
            return Ok(None);
        }
        let bytes = self.nv_read(AZURE_HCL_REPORT_INDEX)?;
        Ok(Some(crate::tee::azure::hcl::parse(&bytes)?.kind))
    }
}
