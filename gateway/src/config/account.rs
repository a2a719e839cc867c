//! The user and group a standalone application runs as (`[app.standalone] user` and
//! `group`), resolved once when the configuration is read, so that `check-config`
//! names an unknown account and the manager only holds numbers.
//!
//! Names are looked up in the files of the local account database, `/etc/passwd` and
//! `/etc/group` (a VM image's own accounts; verigated does not go through NSS, so
//! directory services are not consulted); a decimal number is taken as the ID itself.
//! A line that does not parse is skipped, never a panic: these files are input too.

use std::path::Path;

/// The IDs the application's process takes before it executes the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    /// Its user ID.
    pub uid: u32,
    /// Its group ID, and its only group: supplementary groups are dropped.
    pub gid: u32,
}

/// Where the account database lives; tests point it elsewhere.
#[derive(Debug, Clone, Copy)]
pub struct AccountFiles<'a> {
    /// The `passwd` file (`name:password:uid:gid:...`).
    pub passwd: &'a Path,
    /// The `group` file (`name:password:gid:members`).
    pub group: &'a Path,
}

impl AccountFiles<'static> {
    /// `/etc/passwd` and `/etc/group`.
    pub fn system() -> AccountFiles<'static> {
        AccountFiles {
            passwd: Path::new("/etc/passwd"),
            group: Path::new("/etc/group"),
        }
    }
}

/// Resolves `user` (a name or a number) and `group` (a name or a number; default: the
/// user's primary group). The error is a sentence for `check-config`.
pub fn resolve(user: &str, group: Option<&str>, files: AccountFiles<'_>) -> Result<RunAs, String> {
    let passwd = std::fs::read_to_string(files.passwd)
        .map_err(|e| format!("cannot read {}: {e}", files.passwd.display()))?;
    let entry = find(&passwd, user, 2).and_then(|f| {
        let uid = f.get(2)?.parse().ok()?;
        let gid = f.get(3)?.parse().ok()?;
        Some((uid, gid))
    });
    let (uid, primary_gid) = match (entry, user.parse::<u32>()) {
        (Some((uid, gid)), _) => (uid, Some(gid)),
        (None, Ok(uid)) => (uid, None),
        (None, Err(_)) => {
            return Err(format!(
                "no user `{user}` in {}: create it (useradd --system {user}) or name another",
                files.passwd.display()
            ))
        }
    };
    let gid = match group {
        Some(group) => {
            let text = std::fs::read_to_string(files.group)
                .map_err(|e| format!("cannot read {}: {e}", files.group.display()))?;
            match find(&text, group, 2).and_then(|f| f.get(2)?.parse().ok()) {
                Some(gid) => gid,
                None => group
                    .parse::<u32>()
                    .map_err(|_| format!("no group `{group}` in {}", files.group.display()))?,
            }
        }
        None => primary_gid.ok_or_else(|| {
            format!(
                "user {uid} has no entry in {}, so no primary group: set `group` too",
                files.passwd.display()
            )
        })?,
    };
    Ok(RunAs { uid, gid })
}

/// The fields of the line of `text` whose name (first field) is `key`, or whose field
/// `id_field` equals `key` when `key` is a number.
fn find<'t>(text: &'t str, key: &str, id_field: usize) -> Option<Vec<&'t str>> {
    let by_name = text
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&key) && f.len() > id_field);
    by_name.or_else(|| {
        key.parse::<u32>().ok()?;
        text.lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.get(id_field) == Some(&key))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, passwd: &str, group: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let p = dir.join("passwd");
        let g = dir.join("group");
        std::fs::write(&p, passwd).expect("passwd");
        std::fs::write(&g, group).expect("group");
        (p, g)
    }

    #[test]
    fn names_numbers_and_bad_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (p, g) = files(
            dir.path(),
            "root:x:0:0:root:/root:/bin/sh\nbroken line\napp:x:1001:1002::/srv/app:/bin/false\nshort:x\n",
            "root:x:0:\n::\napps:x:2000:app\n",
        );
        let f = AccountFiles {
            passwd: &p,
            group: &g,
        };
        assert_eq!(
            resolve("app", None, f),
            Ok(RunAs {
                uid: 1001,
                gid: 1002
            })
        );
        assert_eq!(
            resolve("app", Some("apps"), f),
            Ok(RunAs {
                uid: 1001,
                gid: 2000
            })
        );
        assert_eq!(
            resolve("1001", None, f),
            Ok(RunAs {
                uid: 1001,
                gid: 1002
            })
        );
        assert_eq!(
            resolve("4242", Some("77"), f),
            Ok(RunAs { uid: 4242, gid: 77 })
        );
        assert!(resolve("4242", None, f)
            .unwrap_err()
            .contains("set `group`"));
        assert!(resolve("ghost", None, f)
            .unwrap_err()
            .contains("no user `ghost`"));
        assert!(resolve("short", None, f).is_err());
        assert!(resolve("app", Some("nope"), f)
            .unwrap_err()
            .contains("no group `nope`"));
    }
}
