//! `naevus`: melanoma image classification from the command line. Each job lives in its own
//! module; this file only parses the command line and dispatches.

mod augment;
mod bench;
mod bounded;
mod calibrate;
mod combine;
mod crop;
mod ensemble;
mod evaluate;
mod explain;
mod export;
mod guard;
mod merge;
mod predict;
mod prepare;
mod quickstart;
mod recipe_args;
mod report;
mod run_args;
mod serve;
mod staged;
mod train;
mod weights;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "naevus",
    version,
    about = "Skin-lesion (melanoma) image classification: prepare datasets, train, evaluate, predict",
    long_about = "Skin-lesion (melanoma) image classification.\n\n\
        Typical flow: `naevus prepare` decodes a dataset once into a compact cache, `naevus train` \
        trains a model from the registry on it (a dataset split or grouped K-fold cross-validation) \
        into a run directory, `naevus predict` writes a Kaggle-style image_name,target CSV from a \
        run, and `naevus evaluate` scores predictions against labels, `naevus export` makes a model to take away and \
        `naevus serve` puts it behind an HTTP API with a web page.\n\n\
        `naevus quickstart` does all of it on the bundled CC0 sample."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Prepare(prepare::Args),
    Combine(combine::Args),
    Train(train::Args),
    Predict(predict::Args),
    Evaluate(evaluate::Args),
    Calibrate(calibrate::Args),
    Guard(guard::Args),
    Explain(explain::Args),
    Crop(crop::Args),
    Export(export::Args),
    Ensemble(ensemble::Args),
    Merge(merge::Args),
    Serve(serve::Args),
    Report(report::Args),
    Quickstart(quickstart::Args),
    Weights(weights::Args),
    Augment(augment::Args),
    Bench(bench::Args),
    /// List the models of the registry with their input size and parameter count.
    Models,
}

/// glibc maps every allocation over 32 MiB (most activations and gradients of a training
/// batch) with its own mmap and unmaps it when freed, so each step pays a page fault and a
/// page clearing per 4 KiB of every large tensor again (12% of a ResNet-18 training step's
/// samples were in the kernel, bench/NOTES.md). Serving every size from the heap, and
/// returning only more than 1 GiB free at its top to the system, lets freed buffers be reused.
fn keep_freed_memory_for_reuse() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

fn main() {
    // Output piped into `head` and the like ends quietly when the reader closes the pipe, as
    // command-line tools do, instead of panicking on the failed write to stdout.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    keep_freed_memory_for_reuse();
    let cli = Cli::try_parse().unwrap_or_else(|error| shorten_quoted(error).exit());
    let result = match cli.command {
        Command::Prepare(args) => prepare::run(args),
        Command::Combine(args) => combine::run(args),
        Command::Train(args) => train::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Evaluate(args) => evaluate::run(args),
        Command::Calibrate(args) => calibrate::run(args),
        Command::Guard(args) => guard::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Crop(args) => crop::run(args),
        Command::Export(args) => export::run(args),
        Command::Ensemble(args) => ensemble::run(args),
        Command::Merge(args) => merge::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Report(args) => report::run(args),
        Command::Quickstart(args) => quickstart::run(args),
        Command::Weights(args) => weights::run(args),
        Command::Augment(args) => augment::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Models => {
            list_models();
            Ok(())
        }
    };
    if let Err(error) = result {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

/// clap quotes a refused value or argument whole, and one can be megabytes long (a file's
/// worth of --ops): each is cut to the excerpt that naevus's own messages quote.
fn shorten_quoted(mut error: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue};
    for kind in [ContextKind::InvalidValue, ContextKind::InvalidArg, ContextKind::InvalidSubcommand] {
        if let Some(ContextValue::String(text)) = error.get(kind) {
            let short = naevus_data::error::excerpt(text);
            error.insert(kind, ContextValue::String(short));
        }
    }
    // A tip can repeat the value ("to pass '...' as a value"): long tips are dropped.
    if let Some(ContextValue::StyledStrs(tips)) = error.get(ContextKind::Suggested) {
        let tips = tips.iter().filter(|tip| tip.to_string().len() <= 200).cloned().collect();
        error.insert(ContextKind::Suggested, ContextValue::StyledStrs(tips));
    }
    error
}

fn list_models() {
    // Parameter counts include BatchNorm running statistics (burn keeps them as parameters).
    println!("{:<24} {:>6} {:>12} {:>9}  description", "name", "input", "parameters", "imagenet");
    for model in naevus_models::MODELS {
        let imagenet = if model.pretrained.is_some() { "yes" } else { "no" };
        println!("{:<24} {:>6} {:>12} {:>9}  {}", model.name, model.input_size, model.parameter_count(1), imagenet, model.description);
    }
}
