//! `stampd admin ...`: what an operator needs to set up administrators.

use std::io::BufRead;
use std::process::ExitCode;

use clap::Subcommand;

use super::{say, CmdResult};

#[derive(Subcommand)]
pub(super) enum AdminCommand {
    /// Read a password from standard input (one line) and print its argon2id hash for
    /// `[[admin.user]] password_hash` (the password itself never goes in the file or on the
    /// command line).
    HashPassword,
}

pub(super) fn admin(cmd: AdminCommand) -> CmdResult {
    match cmd {
        AdminCommand::HashPassword => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
            let password = line.trim_end_matches(['\r', '\n']);
            if password.chars().count() < 12 {
                return Err("the password is shorter than 12 characters".into());
            }
            say!("{}", crate::admin::auth::hash_password(password)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
