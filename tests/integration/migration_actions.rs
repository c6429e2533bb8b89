//! Referential actions in the D1 migration `pgflare init` writes must do in
//! D1 what they do in Postgres, or be left out with a comment: D1 must
//! never null or reset a column Postgres keeps. Found by the schema zoo's
//! multi-tenant schema (`ON DELETE SET NULL (created_by)` on a foreign key
//! that includes the tenant column). The migration is applied to a plain
//! SQLite database with foreign keys on, as D1 has them.

use crate::common::*;

const SCHEMA: &str = "
    CREATE TABLE orgs (id int PRIMARY KEY);
    CREATE TABLE members (
        org_id int NOT NULL REFERENCES orgs ON DELETE CASCADE,
        user_id int NOT NULL,
        PRIMARY KEY (org_id, user_id));
    -- Postgres 15+: only created_by is set to NULL; the tenant stays.
    CREATE TABLE docs (
        org_id int NOT NULL,
        id int NOT NULL,
        created_by int,
        PRIMARY KEY (org_id, id),
        FOREIGN KEY (org_id, created_by) REFERENCES members ON DELETE SET NULL (created_by));
    CREATE TABLE notes (
        id int PRIMARY KEY,
        org_id int,
        author int,
        FOREIGN KEY (org_id, author) REFERENCES members ON DELETE SET NULL (author));
    -- SET DEFAULT: Postgres writes the column's default, 'general'.
    CREATE TABLE kinds (name text PRIMARY KEY);
    CREATE TABLE labels (
        id int PRIMARY KEY,
        kind text DEFAULT 'general' REFERENCES kinds ON DELETE SET DEFAULT);
    INSERT INTO orgs VALUES (1);
    INSERT INTO members VALUES (1, 10), (1, 11);
    INSERT INTO docs VALUES (1, 100, 10);
    INSERT INTO notes VALUES (200, 1, 11);
    INSERT INTO kinds VALUES ('general'), ('draft');
    INSERT INTO labels VALUES (300, 'draft');";

/// What Postgres does: the deletes succeed and only the named column changes.
fn postgres_side(db: &TestDb) {
    db.exec("DELETE FROM members WHERE user_id IN (10, 11); DELETE FROM kinds WHERE name = 'draft'");
    let rows = db.query_one(
        "SELECT (SELECT row(org_id, created_by)::text FROM docs) || (SELECT row(org_id, author)::text FROM notes)
             || (SELECT kind FROM labels)",
    );
    assert_eq!(rows, "(1,)(1,)general");
}

#[test]
fn a_set_null_with_a_column_list_or_a_set_default_never_changes_other_columns_in_d1() {
    let db = TestDb::new("fkactions");
    db.exec(SCHEMA);
    let dir = temp_dir("fkactions");
    let mig = dir.path().join("migrations");
    init_config(&db, dir.path());
    let sql = std::fs::read_to_string(mig.join("0001_pgflare_initial.sql")).expect("migration");

    let d1 = rusqlite::Connection::open_in_memory().expect("sqlite");
    d1.execute_batch("PRAGMA foreign_keys = ON").expect("fk on");
    d1.execute_batch(&sql).expect("the migration applies");
    d1.execute_batch(
        "INSERT INTO orgs VALUES (1); INSERT INTO members VALUES (1, 10), (1, 11);
         INSERT INTO docs VALUES (1, 100, 10); INSERT INTO notes VALUES (200, 1, 11);
         INSERT INTO kinds VALUES ('general'), ('draft'); INSERT INTO labels VALUES (300, 'draft');",
    )
    .expect("rows");
    // SQLite cannot null part of a key or write Postgres's default (D1
    // columns have none): such deletes must be refused, not carried out
    // differently (which nulled docs.org_id, the tenant, or refused with
    // a NOT NULL error on it, and set labels.kind to NULL).
    for delete in [
        "DELETE FROM members WHERE user_id = 10",
        "DELETE FROM members WHERE user_id = 11",
        "DELETE FROM kinds WHERE name = 'draft'",
    ] {
        let err = d1.execute_batch(delete).expect_err(delete).to_string();
        assert!(err.contains("FOREIGN KEY constraint failed"), "{delete}: {err}\n{sql}");
    }
    let kept: (i64, i64, i64, String) = d1
        .query_row(
            "SELECT (SELECT org_id FROM docs), (SELECT org_id FROM notes), (SELECT author FROM notes),
                    (SELECT kind FROM labels)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .expect("rows");
    assert_eq!(kept, (1, 1, 11, "draft".to_string()));
    // The migration says which action it left out and what to do instead.
    for note in [
        "FOREIGN KEY docs_org_id_created_by_fkey: ON DELETE SET NULL (created_by) left out",
        "FOREIGN KEY notes_org_id_author_fkey: ON DELETE SET NULL (author) left out",
        "FOREIGN KEY labels_kind_fkey: ON DELETE SET DEFAULT left out",
    ] {
        assert!(sql.contains(note), "{note}\n{sql}");
    }
    // Doing it by hand, as the note says, works.
    d1.execute_batch(
        "UPDATE docs SET created_by = NULL WHERE org_id = 1 AND created_by = 10;
         DELETE FROM members WHERE user_id = 10;",
    )
    .expect("delete after clearing the column");
    postgres_side(&db);
}
