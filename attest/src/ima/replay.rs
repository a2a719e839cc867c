//! Replaying a measurement list into PCR values, and re-checking template hashes.
//!
//! The kernel starts each PCR at zeros and, per entry, sets
//! `PCR = H(PCR || value)` in every bank, where `value` is [`ImaEntry::extend_value`]:
//! the template hash in the bank of its algorithm, the bank's hash of the template
//! data in the others, all-0xFF for a violation. A replay that equals the quoted PCR
//! proves the list is the one the kernel extended, provided each template hash also
//! matches its template data ([`check`]) — otherwise a list could keep the hashes and
//! lie about the files.

use super::{HashAlg, ImaEntry, ImaError};
use std::collections::BTreeMap;

/// The PCR IMA extends unless its policy says otherwise.
pub const IMA_PCR: u32 = 10;

/// One TPM extend: `H(pcr || value)` in the bank's algorithm.
pub fn extend(bank: HashAlg, pcr: &[u8], value: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(pcr.len().saturating_add(value.len()));
    buf.extend_from_slice(pcr);
    buf.extend_from_slice(value);
    bank.digest(&buf)
}

/// The value of PCR 10 in `bank` after the entries logged for PCR 10, from zeros.
pub fn replay(entries: &[ImaEntry], bank: HashAlg) -> Vec<u8> {
    replay_pcr(entries, bank, IMA_PCR)
}

/// The value of PCR `pcr` in `bank` after the entries logged for it, from zeros.
pub fn replay_pcr(entries: &[ImaEntry], bank: HashAlg, pcr: u32) -> Vec<u8> {
    entries
        .iter()
        .filter(|e| e.pcr() == pcr)
        .fold(vec![0; bank.size()], |acc, e| {
            extend(bank, &acc, &e.extend_value(bank))
        })
}

/// The value in `bank` of every PCR that the entries extend.
pub fn replay_all(entries: &[ImaEntry], bank: HashAlg) -> BTreeMap<u32, Vec<u8>> {
    let mut pcrs: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    for e in entries {
        let acc = pcrs.entry(e.pcr()).or_insert_with(|| vec![0; bank.size()]);
        *acc = extend(bank, acc, &e.extend_value(bank));
    }
    pcrs
}

/// Checks that every entry's template hash is the hash of its template data, and
/// names the first entry where it is not. Violations are skipped: their template hash
/// is zeros by design, and replay extends all-0xFF for them, not their data.
pub fn check(entries: &[ImaEntry]) -> Result<(), ImaError> {
    match entries
        .iter()
        .enumerate()
        .find_map(|(i, e)| check_entry(i, e).err())
    {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Like [`check`], but returns every bad entry rather than the first.
pub fn check_all(entries: &[ImaEntry]) -> Vec<ImaError> {
    entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| check_entry(i, e).err())
        .collect()
}

/// Checks one entry, `index` being its position in the list (for the error).
pub fn check_entry(index: usize, entry: &ImaEntry) -> Result<(), ImaError> {
    if entry.is_violation() {
        return Ok(());
    }
    let computed = entry.computed_template_hash(entry.template_hash_alg());
    if computed == entry.template_hash() {
        Ok(())
    } else {
        Err(ImaError::TemplateHashMismatch {
            entry: index,
            path: entry.path().into_owned(),
            logged: hex::encode(entry.template_hash()),
            computed: hex::encode(computed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_list_replays_to_zeros() {
        for bank in HashAlg::ALL {
            assert_eq!(replay(&[], bank), vec![0; bank.size()]);
        }
    }

    #[test]
    fn replay_is_a_chain_of_extends() {
        let a = ImaEntry::measure("/a", HashAlg::Sha256, b"a").unwrap();
        let b = ImaEntry::violation("/b", HashAlg::Sha256).unwrap();
        let other = ImaEntry::measure("/c", HashAlg::Sha256, b"c")
            .unwrap()
            .with_pcr(11);
        let entries = [a.clone(), other.clone(), b];
        for bank in HashAlg::ALL {
            let zero = vec![0; bank.size()];
            let want = bank.digest(
                &[
                    bank.digest(&[zero.clone(), a.extend_value(bank)].concat()),
                    vec![0xff; bank.size()],
                ]
                .concat(),
            );
            assert_eq!(replay(&entries, bank), want);
            let all = replay_all(&entries, bank);
            assert_eq!(all.len(), 2);
            assert_eq!(all[&10], want);
            assert_eq!(all[&11], extend(bank, &zero, &other.extend_value(bank)));
        }
    }
}
