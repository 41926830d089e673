//! The seeded template catalogue: the images VMs boot from, read-only through the API.

use rusqlite::{Transaction, params};
use serde_json::json;

/// (name, os, os_version, arch, min_disk_gb, released_at, description)
const CATALOGUE: &[(&str, &str, &str, &str, i64, &str, &str)] = &[
    ("ubuntu-20-04", "ubuntu", "20.04", "x86_64", 10, "2020-04-23T00:00:00Z", "Ubuntu 20.04 LTS (Focal Fossa), cloud image"),
    ("ubuntu-22-04", "ubuntu", "22.04", "x86_64", 10, "2022-04-21T00:00:00Z", "Ubuntu 22.04 LTS (Jammy Jellyfish), cloud image"),
    ("ubuntu-24-04", "ubuntu", "24.04", "x86_64", 10, "2024-04-25T00:00:00Z", "Ubuntu 24.04 LTS (Noble Numbat), cloud image"),
    ("ubuntu-24-04-arm", "ubuntu", "24.04", "aarch64", 10, "2024-04-25T00:00:00Z", "Ubuntu 24.04 LTS (Noble Numbat), cloud image for Arm"),
    ("debian-11", "debian", "11", "x86_64", 10, "2021-08-14T00:00:00Z", "Debian 11 (bullseye), generic cloud image"),
    ("debian-12", "debian", "12", "x86_64", 10, "2023-06-10T00:00:00Z", "Debian 12 (bookworm), generic cloud image"),
    ("rocky-8", "rocky", "8.10", "x86_64", 20, "2024-05-30T00:00:00Z", "Rocky Linux 8.10, generic cloud image"),
    ("rocky-9", "rocky", "9.4", "x86_64", 20, "2024-05-09T00:00:00Z", "Rocky Linux 9.4, generic cloud image"),
    ("alma-9", "almalinux", "9.4", "x86_64", 20, "2024-05-06T00:00:00Z", "AlmaLinux 9.4, generic cloud image"),
    ("fedora-40", "fedora", "40", "x86_64", 15, "2024-04-23T00:00:00Z", "Fedora Cloud 40"),
    ("alpine-3-20", "alpine", "3.20", "x86_64", 10, "2024-05-22T00:00:00Z", "Alpine Linux 3.20, cloud image"),
];

/// Inserts the catalogue (idempotent: existing templates are left as they are).
pub fn seed(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare("INSERT OR IGNORE INTO objects (kind, id, name, version, body) VALUES ('templates', ?1, ?2, 1, ?3)")?;
    for (name, os, os_version, arch, min_disk_gb, released_at, description) in CATALOGUE {
        let id = format!("tpl-{name}");
        let body = json!({
            "id": id, "name": name, "os": os, "os_version": os_version, "arch": arch,
            "min_disk_gb": min_disk_gb, "released_at": released_at, "description": description,
            "created_at": released_at, "updated_at": released_at, "version": 1,
        });
        stmt.execute(params![id, name, body.to_string()])?;
    }
    Ok(())
}
