//! `stampd audit ...`: verify, export and query the journal; ship to and migrate PostgreSQL.

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::CmdResult;
use crate::audit::query::query_of;

/// Where the journal is.
#[derive(clap::Args)]
pub(super) struct JournalArgs {
    /// Data directory; the journal is its `journal/` directory. Default ./stampd-data.
    #[arg(long, default_value = "./stampd-data")]
    data_dir: PathBuf,
    /// The journal directory, when not DATA_DIR/journal.
    #[arg(long)]
    journal: Option<PathBuf>,
}

impl JournalArgs {
    fn dir(&self) -> PathBuf {
        self.journal
            .clone()
            .unwrap_or_else(|| self.data_dir.join("journal"))
    }
}

/// A PostgreSQL database.
#[derive(clap::Args)]
pub(in crate::cli) struct PostgresArgs {
    /// Connection string, e.g. "host=/run/postgresql dbname=stampd" (no password in it).
    #[arg(long = "postgres", value_name = "DSN")]
    dsn: String,
    /// Environment variable holding the password.
    #[arg(long)]
    password_env: Option<String>,
    /// File holding the password.
    #[arg(long, conflicts_with = "password_env")]
    password_file: Option<PathBuf>,
}

impl PostgresArgs {
    /// The database, its password read from the env variable or file given.
    pub(in crate::cli) fn target(&self) -> Result<crate::audit::postgres::Target, String> {
        let password = crate::secret::read(
            "the password",
            crate::secret::Source {
                env: self.password_env.as_deref(),
                file: self.password_file.as_deref(),
                credential: None,
            },
        )?;
        crate::audit::postgres::Target::new(&self.dsn, password)
    }
}

/// A PostgreSQL database to read instead of the journal, when `--postgres` is given.
#[derive(clap::Args)]
pub(super) struct PostgresSource {
    /// Read this PostgreSQL database (every node's rows) instead of the journal.
    #[arg(long = "postgres", value_name = "DSN")]
    dsn: Option<String>,
    /// Environment variable holding the password.
    #[arg(long, requires = "dsn")]
    password_env: Option<String>,
    /// File holding the password.
    #[arg(long, requires = "dsn", conflicts_with = "password_env")]
    password_file: Option<PathBuf>,
    /// Only this TSA identity's rows.
    #[arg(long, requires = "dsn")]
    identity: Option<String>,
}

impl PostgresSource {
    /// The database, when one was named.
    fn args(self) -> Option<PostgresArgs> {
        Some(PostgresArgs {
            dsn: self.dsn?,
            password_env: self.password_env,
            password_file: self.password_file,
        })
    }
}

/// Record filters; every one given must match.
#[derive(clap::Args)]
pub(super) struct Filters {
    /// Records at or after this time (RFC 3339).
    #[arg(long)]
    from: Option<String>,
    /// Records at or before this time (RFC 3339).
    #[arg(long)]
    to: Option<String>,
    /// Only entries of this kind: `request`, or `clock` (clock synchronisation events).
    #[arg(long)]
    kind: Option<String>,
}

#[derive(Subcommand)]
pub(super) enum AuditCommand {
    /// Check every CRC and the hash chain of every shard, in the journal or (--postgres)
    /// from the rows in PostgreSQL alone, every node's; exit 0 only when all are intact.
    Verify {
        #[command(flatten)]
        journal: JournalArgs,
        #[command(flatten)]
        postgres: PostgresSource,
        /// Only this node's shards (--postgres).
        #[arg(long, requires = "dsn")]
        node: Option<u16>,
        /// A chain head known from elsewhere, e.g. an anchored checkpoint: frame SEQ must
        /// still be there with this hash (the newest frames were not cut off). Repeatable.
        #[arg(long = "expect-head", value_name = "SEQ:HASH")]
        expect_head: Vec<crate::audit::journal::ExpectedHead>,
        /// CA certificates (PEM) the anchored checkpoints' tokens must chain to; without,
        /// their signatures are checked with the certificate each token carries.
        #[arg(long)]
        ca: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Print records as JSON lines (kind, serial, status, gen_time, service, policy, ...),
    /// with the clock synchronisation events (kind "clock"), every shard's in time order.
    Export {
        #[command(flatten)]
        journal: JournalArgs,
        #[command(flatten)]
        filters: Filters,
    },
    /// Find records by serial, time, message imprint, service or status, in the journal or
    /// in PostgreSQL (--postgres).
    Query {
        #[command(flatten)]
        journal: JournalArgs,
        #[command(flatten)]
        filters: Filters,
        /// Serial number in hex.
        #[arg(long)]
        serial: Option<String>,
        /// Message imprint (the hashed data's digest) in hex.
        #[arg(long)]
        imprint: Option<String>,
        #[arg(long)]
        service: Option<String>,
        /// granted or rejection.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        postgres: PostgresSource,
    },
    /// Ship a journal no server is writing to PostgreSQL until caught up, every shard (e.g.
    /// the journal of a node that is gone). A running server ships its own journal.
    Ship {
        #[command(flatten)]
        journal: JournalArgs,
        #[command(flatten)]
        postgres: PostgresArgs,
        /// The TSA identity the records belong to (`[audit] identity`).
        #[arg(long, default_value = "stampd")]
        identity: String,
    },
    /// Create or update stampd's schema in PostgreSQL.
    Migrate {
        #[command(flatten)]
        postgres: PostgresArgs,
    },
}

pub(super) fn audit(cmd: AuditCommand) -> CmdResult {
    let mut out = std::io::stdout().lock();
    let code = match cmd {
        AuditCommand::Verify {
            journal,
            postgres,
            node,
            expect_head,
            ca,
            json,
        } => {
            let trusted = match &ca {
                Some(path) => super::client::read_pem_certs(path)?,
                None => Vec::new(),
            };
            let identity = postgres.identity.clone();
            match postgres.args() {
                None => commands::verify(&journal.dir(), &expect_head, &trusted, json, &mut out)?,
                Some(pg) => commands::verify_postgres(
                    &pg.target()?,
                    (identity.as_deref(), node),
                    &expect_head,
                    &trusted,
                    json,
                    &mut out,
                )?,
            }
        }
        AuditCommand::Export { journal, filters } => {
            let mut q = query_of(
                None,
                filters.from.as_deref(),
                filters.to.as_deref(),
                None,
                None,
                None,
            )?;
            q.kind = filters.kind;
            commands::export(&journal.dir(), &q, &mut out)?
        }
        AuditCommand::Query {
            journal,
            filters,
            serial,
            imprint,
            service,
            status,
            postgres,
        } => {
            let mut q = query_of(
                serial.as_deref(),
                filters.from.as_deref(),
                filters.to.as_deref(),
                imprint.as_deref(),
                service,
                status,
            )?;
            q.kind = filters.kind;
            q.identity = postgres.identity.clone();
            match postgres.args() {
                None => commands::export(&journal.dir(), &q, &mut out)?,
                Some(pg) => commands::query_postgres(&pg.target()?, &q, &mut out)?,
            }
        }
        AuditCommand::Ship {
            journal,
            postgres,
            identity,
        } => commands::ship(&journal.dir(), postgres.target()?, &identity, &mut out)?,
        AuditCommand::Migrate { postgres } => commands::migrate(&postgres.target()?, &mut out)?,
    };
    Ok(ExitCode::from(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_flags_are_checked() {
        assert!(query_of(None, Some("yesterday"), None, None, None, None).is_err());
        assert!(query_of(None, None, None, Some("zz"), None, None).is_err());
        assert!(query_of(None, None, None, None, None, Some("ok".into())).is_err());
        let q = query_of(
            Some("ff"),
            Some("2026-01-01T00:00:00Z"),
            None,
            Some("AB"),
            Some("s".into()),
            Some("granted".into()),
        )
        .unwrap();
        assert_eq!(q.imprint, Some(vec![0xab]));
        assert_eq!(q.from.map(|t| t.unix_secs), Some(1_767_225_600));
    }
}
