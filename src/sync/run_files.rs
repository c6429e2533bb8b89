//! The folder a `files` sync run writes (`OUT/sync/NNNNNN/`): its
//! `manifest.json`, the order to apply the run's SQL files in.

use crate::error::{Error, Result};

/// `manifest.json` of a `files` run: the order to apply its SQL files in
/// (upserts parents first, links, then the deletes), as `load`'s manifest does.
pub fn write_run_manifest(run: &std::path::Path, tables: &[&crate::batch::TableSpec]) -> Result<()> {
    let mut order = Vec::new();
    // Upserts, then links (every row they may point at is in), then the
    // deletes (which unlink what they delete).
    for prefix in ["part-", "link-"] {
        for t in tables {
            let dir = run.join(t.file_stem());
            let mut files: Vec<String> = match std::fs::read_dir(&dir) {
                Ok(rd) => rd
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| n.starts_with(prefix) && n.ends_with(".sql"))
                    .map(|n| format!("{}/{n}", t.file_stem()))
                    .collect(),
                Err(_) => Vec::new(),
            };
            files.sort();
            order.extend(files);
        }
    }
    if run.join("deletes.sql").is_file() {
        order.push("deletes.sql".to_string());
    }
    let manifest = serde_json::json!({ "format": "pgflare-sync-files-v1", "apply_order": order });
    let path = run.join("manifest.json");
    let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Internal(e.to_string()))?;
    std::fs::create_dir_all(run).map_err(Error::io(run))?;
    std::fs::write(&path, bytes).map_err(Error::io(&path))
}
