//! `naevus merge`: the CSVs of `naevus predict --shard` joined into one, checked.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use naevus_data::error::excerpt;
use naevus_run::shard::ShardRecord;

/// Join the CSVs of a sharded `naevus predict --shard K/N` into one.
///
/// Each CSV's record (CSV.shard.json) must be there. The merge checks that the shards are
/// of one job (the same images, the same shard count), that each shard 0 to N - 1 is given
/// exactly once, that each CSV holds the rows its shard scored, with the same columns, and
/// that no image is in two of them; images a shard could not read are named. Rows are written
/// in shard order.
#[derive(clap::Args)]
pub struct Args {
    /// The shards' CSVs (each with its .shard.json beside it).
    #[arg(required = true)]
    shards: Vec<PathBuf>,
    /// Where to write the joined CSV (`-`: standard output).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let mut shards = Vec::with_capacity(args.shards.len());
    for csv in &args.shards {
        shards.push((csv, ShardRecord::read(csv)?));
    }
    let first = shards[0].1.clone();
    let count = first.shards;
    for (csv, record) in &shards {
        if (record.shards, &record.inputs_sha256, record.images_in_all) != (count, &first.inputs_sha256, first.images_in_all) {
            bail!(
                "{} is shard {} of {} of a job over {} images (inputs {}), but {} is of {} shards over {} images (inputs {}): they are not shards of one job",
                csv.display(),
                record.shard,
                record.shards,
                record.images_in_all,
                record.inputs_sha256,
                shards[0].0.display(),
                count,
                first.images_in_all,
                first.inputs_sha256
            );
        }
    }
    shards.sort_by_key(|(_, record)| record.shard);
    let given: Vec<usize> = shards.iter().map(|(_, r)| r.shard).collect();
    if let Some(twice) = given.windows(2).find(|w| w[0] == w[1]) {
        bail!("shard {} is given twice; give each shard's CSV once", twice[0]);
    }
    let missing: Vec<String> = (0..count).filter(|k| !given.contains(k)).map(|k| k.to_string()).collect();
    if !missing.is_empty() {
        bail!("{} of the {count} shards are missing (shard {}): their images were not scored", missing.len(), missing.join(", "));
    }
    let assigned: usize = shards.iter().map(|(_, r)| r.assigned).sum();
    if assigned != first.images_in_all {
        bail!("the shards were given {assigned} images in all, the job has {}: the records are damaged", first.images_in_all);
    }

    let mut out = csv::Writer::from_writer(Vec::new());
    let mut header: Option<csv::StringRecord> = None;
    let mut seen: HashSet<String> = HashSet::with_capacity(assigned);
    for (csv_path, record) in &shards {
        let mut reader = csv::Reader::from_reader(naevus_data::csv_limits::open_bounded(csv_path)?);
        let this = reader.headers().with_context(|| format!("{} line 1", csv_path.display()))?.clone();
        match &header {
            None => {
                out.write_record(&this)?;
                header = Some(this);
            }
            Some(first) if *first != this => bail!("{} has the columns {:?}, the first shard {:?}: they were not scored alike", csv_path.display(), this, first),
            Some(_) => {}
        }
        let mut rows = 0;
        for row in reader.records() {
            let row = row.with_context(|| format!("{}: malformed row", csv_path.display()))?;
            let id = row.get(0).unwrap_or_default();
            if !seen.insert(id.to_string()) {
                bail!("image {} is in two shards' CSVs (again in {}): the shards overlap", excerpt(id), csv_path.display());
            }
            out.write_record(&row)?;
            rows += 1;
        }
        if rows != record.scored {
            bail!("{} holds {rows} rows, its record says its shard scored {}: the CSV is incomplete or was changed", csv_path.display(), record.scored);
        }
    }
    naevus_run::write_atomic(&args.out, &out.into_inner().context("writing the merged CSV")?)?;
    let unreadable: Vec<&str> = shards.iter().flat_map(|(_, r)| r.unreadable.iter().map(String::as_str)).collect();
    let line = format!(
        "merged {count} shards into {}: {} of the job's {} images scored, each once{}",
        if args.out.as_os_str() == "-" { "standard output".to_string() } else { args.out.display().to_string() },
        seen.len(),
        first.images_in_all,
        if unreadable.is_empty() { String::new() } else { format!("; {} could not be read: {}", unreadable.len(), unreadable.join(", ")) }
    );
    if args.out.as_os_str() == "-" {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
    Ok(())
}
