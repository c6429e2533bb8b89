//! The schema zoo: schemas that RAG projects on Supabase really use, written
//! from their projects' documentation or source (fixtures/zoo/NAME/schema.sql
//! cites each), filled with rows in the shapes those libraries write
//! (tests/py/zoo_schemas.py), and taken through the whole migration: inspect,
//! init, load into the emulator's D1 + Vectorize, verify, a day of changes
//! with 100+ deletes, sync, verify, archive, archive verify (zoo/flow.rs).
//! One test per schema, so they run in parallel.

mod flow;
mod steps;

use flow::{run, Spec};

/// LangChain's SupabaseVectorStore: `documents` (bigserial), LangChain.js
/// metadata nested three levels, two chunks over 100 KB.
#[test]
fn zoo_langchain_supabase() {
    run(&Spec { name: "langchain_supabase", schema: "public", long_rows: 2, exclude: &[] });
}

/// LlamaIndex's SupabaseVectorStore through supabase/vecs: `vecs.base_demo`
/// (varchar ids, NOT NULL vectors, node JSON of a few KB in the metadata).
#[test]
fn zoo_llamaindex_vecs() {
    run(&Spec { name: "llamaindex_vecs", schema: "vecs", long_rows: 0, exclude: &[] });
}

/// Supabase's nextjs-openai-doc-search: a page tree (`parent_page_id`,
/// children with smaller ids than their parent) and sections; subtrees
/// deleted and pages re-parented during the day.
#[test]
fn zoo_nods() {
    run(&Spec { name: "nods", schema: "public", long_rows: 1, exclude: &[] });
}

/// Supabase's chatgpt-your-files: identity keys, foreign keys into
/// `auth.users` and `storage.objects` (other schemas), vector(384), RLS.
#[test]
fn zoo_chatgpt_your_files() {
    run(&Spec { name: "chatgpt_your_files", schema: "public", long_rows: 0, exclude: &[] });
}

/// LangChain's PGVector: collections and a `vector` column without a
/// dimension (pgflare.edits.toml names it); a collection deleted by cascade.
#[test]
fn zoo_langchain_pgvector() {
    run(&Spec { name: "langchain_pgvector", schema: "public", long_rows: 0, exclude: &[] });
}

/// Haystack's PgvectorDocumentStore: SHA-256 ids of exactly 64 characters
/// (Vectorize's limit), bytea blobs, vector(768), a 150 KB document.
#[test]
fn zoo_haystack() {
    run(&Spec { name: "haystack", schema: "public", long_rows: 1, exclude: &[] });
}

/// A multi-tenant knowledge base: composite keys with the tenant, enums,
/// text[] tags, soft deletes (archived documents before the load too, one
/// whose chunks the app left live: they stay out with it; during the day
/// one more archived that way and that one restored) and one Vectorize
/// namespace per tenant (pgflare.edits.toml); a tenant deleted by cascade.
#[test]
fn zoo_multitenant() {
    run(&Spec { name: "multitenant", schema: "public", long_rows: 0, exclude: &[] });
}

/// Supabase's "Automatic embeddings" guide: halfvec(1536), embeddings
/// filled in later by a queue worker, cleared by a trigger on edits.
#[test]
fn zoo_supabase_auto_embeddings() {
    run(&Spec { name: "supabase_auto_embeddings", schema: "public", long_rows: 0, exclude: &[] });
}

/// Supabase's "Hybrid search" guide: a generated `tsvector` (which pgflare
/// lists as unreadable, naming `--exclude`), vector(512) searched by inner product
/// (pgflare.edits.toml: metric dot-product).
#[test]
fn zoo_supabase_hybrid_search() {
    run(&Spec {
        name: "supabase_hybrid_search",
        schema: "public",
        long_rows: 0,
        exclude: &["documents.fts"],
    });
}
