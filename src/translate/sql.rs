//! The `sql` block (mapping §7): for spans whose `db.system` is a SQL database, the
//! connection string, database type, user and query, read from the remaining map.
//!
//! Only the old (pre-1.26) database conventions are read; a span of another `db.system`
//! gets no block and keeps its `db.*` keys for the metadata.

use super::attributes::{str_of, val, Attrs};
use super::json;

/// The block of one piece.
pub(crate) struct Sql<'a> {
    connection_string: String,
    url: &'a str,
    sanitized_query: &'a str,
    database_type: &'a str,
    user: &'a str,
}

fn is_sql(system: &str) -> bool {
    matches!(
        system,
        "db2"
            | "derby"
            | "hive"
            | "mariadb"
            | "mssql"
            | "mysql"
            | "oracle"
            | "postgresql"
            | "sqlite"
            | "teradata"
            | "other_sql"
    )
}

/// The block, consuming its five keys, when the span is a SQL one.
pub(crate) fn make<'a>(attrs: &mut Attrs<'a>, span_name: &'a str) -> Option<Sql<'a>> {
    let rem = |key: &str| attrs.remaining(key).map_or("", |kv| str_of(val(kv)));
    let system = rem("db.system");
    if !is_sql(system) {
        return None;
    }
    let conn = match rem("db.connection_string") {
        "" => "localhost",
        c => c,
    };
    let sql = Sql {
        connection_string: format!("{conn}/{}", rem("db.name")),
        url: span_name,
        sanitized_query: rem("db.statement"),
        database_type: system,
        user: rem("db.user"),
    };
    attrs.consume_where(|k| matches!(k, "db.connection_string" | "db.system" | "db.name" | "db.statement" | "db.user"));
    Some(sql)
}

pub(crate) fn write(buf: &mut Vec<u8>, s: &Sql<'_>) {
    json::key(buf, "sql");
    buf.push(b'{');
    json::opt_str_field(buf, "connection_string", &s.connection_string);
    json::opt_str_field(buf, "url", s.url);
    json::opt_str_field(buf, "sanitized_query", s.sanitized_query);
    json::opt_str_field(buf, "database_type", s.database_type);
    json::opt_str_field(buf, "user", s.user);
    buf.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::test_attrs::s;
    use opentelemetry_proto::tonic::common::v1::KeyValue;

    fn run(kvs: &[KeyValue], name: &str) -> (String, Vec<String>) {
        let mut attrs = Attrs::new(kvs);
        let out = match make(&mut attrs, name) {
            Some(sql) => {
                let mut buf = Vec::new();
                write(&mut buf, &sql);
                String::from_utf8(buf).unwrap()
            }
            None => "none".into(),
        };
        (out, attrs.remaining_entries().iter().map(|(_, kv)| kv.key.clone()).collect())
    }

    #[test]
    fn sql_span() {
        let kvs = [
            s("db.system", "postgresql"),
            s("db.name", "orders"),
            s("db.connection_string", "jdbc:postgresql://db.host:5432"),
            s("db.statement", "SELECT * FROM t WHERE a = 'x' & b < 2"),
            s("db.user", "readonly"),
            s("db.operation", "SELECT"),
        ];
        let (out, left) = run(&kvs, "SELECT orders");
        assert_eq!(
            out,
            concat!(
                r#""sql":{"connection_string":"jdbc:postgresql://db.host:5432/orders","url":"SELECT orders","#,
                r#""sanitized_query":"SELECT * FROM t WHERE a = 'x' \u0026 b \u003c 2","database_type":"postgresql","user":"readonly"}"#
            )
        );
        assert_eq!(left, ["db.operation"]);
    }

    #[test]
    fn defaults_and_non_sql() {
        let (out, _) = run(&[s("db.system", "mysql")], "");
        assert_eq!(out, r#""sql":{"connection_string":"localhost/","database_type":"mysql"}"#);
        let kvs = [s("db.system", "mongodb"), s("db.name", "x"), s("db.statement", "find")];
        let (out, left) = run(&kvs, "find");
        assert_eq!(out, "none");
        assert_eq!(left.len(), 3, "nothing consumed");
        assert_eq!(run(&[s("db.system.name", "postgresql")], "q").0, "none", "new conventions are not read");
    }
}
