//! Where `wrangler dev` / `wrangler d1 execute --local` keep a D1 database:
//! `<project>/.wrangler/state/v3/d1/miniflare-D1DatabaseObject/<id>.sqlite`,
//! where `<id>` is the Durable Object id miniflare derives from the
//! database id: with k = SHA-256("miniflare-D1DatabaseObject"),
//! n = HMAC-SHA-256(k, database_id)[..16] and id = hex(n ||
//! HMAC-SHA-256(k, n)[..16]). Checked against a file wrangler 4 created
//! (see the test), so `pgflare load --target sqlite` can fill the very
//! database a local Worker reads.

use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

const UNIQUE_KEY: &str = "miniflare-D1DatabaseObject";

/// The local SQLite file of D1 database `database_id` for the wrangler
/// project in `project_dir` (default persistence folder).
pub fn local_d1_file(project_dir: &Path, database_id: &str) -> PathBuf {
    project_dir
        .join(".wrangler/state/v3/d1")
        .join(UNIQUE_KEY)
        .join(format!("{}.sqlite", durable_object_id(UNIQUE_KEY, database_id)))
}

fn durable_object_id(unique_key: &str, name: &str) -> String {
    let key = Sha256::digest(unique_key.as_bytes());
    let mac = |data: &[u8]| -> Vec<u8> {
        // HMAC accepts keys of any length: this cannot fail.
        match <Hmac<Sha256> as KeyInit>::new_from_slice(&key) {
            Ok(mut m) => {
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        }
    };
    let n = mac(name.as_bytes());
    let n = &n[..16.min(n.len())];
    let m = mac(n);
    format!("{}{}", hex::encode(n), hex::encode(&m[..16.min(m.len())]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_file_wrangler_created() {
        // `wrangler d1 execute rehearsal --local` (wrangler 4.86) with
        // database_id 00000000-0000-4000-8000-00000000d1d1 created this file.
        let p = local_d1_file(Path::new("proj"), "00000000-0000-4000-8000-00000000d1d1");
        assert_eq!(
            p,
            Path::new("proj/.wrangler/state/v3/d1/miniflare-D1DatabaseObject/df07e471b4933204b83f1f9b4266f65901a42a9ac757d380276b7ae7df824159.sqlite")
        );
    }
}
