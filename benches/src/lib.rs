//! `mailraft-bench`: imaptest-style load generation and consistency checking against any IMAP
//! server, and a harness that compares Mailraft with Dovecot on the same machine and corpus.
//!
//! Flow of a run: [`cli`] options → [`app`] builds a [`workloads::Ctx`] (target, users, seeded
//! [`corpus`], shared [`stats::Recorder`] and [`checks::Registry`]) → a workload spawns one tokio
//! task per session; each session talks through [`client`] (framer + parser, TLS, LMTP), and
//! every reply is timed into HDR histograms and checked by [`checks`] → [`report`] prints
//! per-second lines and totals and writes JSON; [`plot`] draws an SVG. [`compare`] starts
//! Dovecot and `mailraft dev` and runs the same workloads against both.

// Unit tests may unwrap; the library itself may not (workspace lint `unwrap_used`).
#![cfg_attr(test, allow(clippy::unwrap_used))]
#![deny(missing_docs)]

pub mod app;
pub mod checks;
pub mod cli;
pub mod client;
pub mod compare;
pub mod corpus;
pub mod error;
pub mod plot;
pub mod report;
pub mod rng;
pub mod rusage;
pub mod stats;
pub mod workloads;
