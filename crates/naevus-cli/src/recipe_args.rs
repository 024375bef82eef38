//! The recipe keys as command-line flags (`--image-size` for `image_size`), made from
//! naevus-run's one list of keys, with each key's documentation as the flag's help.

macro_rules! recipe_args {
    ($( $(#[doc = $doc:literal])* $key:ident : $ty:ty = $default:expr, )*) => {
        /// Every recipe key as a flag; a flag given overrides the recipe's value.
        #[derive(Debug, Clone, Default, clap::Args)]
        pub struct RecipeArgs {
            $( $(#[doc = $doc])* #[arg(long)] pub $key: Option<<$ty as naevus_run::recipe::RecipeValue>::Flag>, )*
        }

        impl RecipeArgs {
            /// The values given, for the recipe to take.
            pub fn to_flags(&self) -> naevus_run::RecipeFlags {
                naevus_run::RecipeFlags { $( $key: self.$key.clone(), )* }
            }
        }
    };
}

naevus_run::recipe_key_list!(recipe_args);

#[cfg(test)]
mod tests {
    use clap::Parser;
    use naevus_run::recipe::{AugmentPreset, LossKind, OptimizerKind};
    use naevus_run::{RecipeFlags, TrainConfig};

    use super::RecipeArgs;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        recipe: RecipeArgs,
    }

    fn flags(args: &[&str]) -> Result<RecipeFlags, clap::Error> {
        Cli::try_parse_from(std::iter::once("naevus").chain(args.iter().copied())).map(|cli| cli.recipe.to_flags())
    }

    #[test]
    fn every_recipe_key_is_a_flag_of_the_same_name() {
        let given = flags(&[
            "--model", "resnet18", "--image-size", "64", "--backbone-lr", "1e-5", "--optimizer", "adam", "--loss", "focal",
            "--metadata", "sex,age", "--classes", "binary", "--precision", "bf16", "--pretrained", "true",
        ])
        .unwrap();
        assert_eq!(given.given(), ["model", "pretrained", "image_size", "backbone_lr", "optimizer", "loss", "classes", "metadata", "precision"]);
        let mut recipe = TrainConfig::default();
        given.apply(&mut recipe);
        assert_eq!(recipe.model, "resnet18");
        assert_eq!(recipe.image_size, Some(64));
        assert_eq!(recipe.backbone_lr, Some(1e-5));
        assert_eq!(recipe.optimizer, OptimizerKind::Adam);
        assert_eq!(recipe.loss, LossKind::Focal);
        assert_eq!(recipe.metadata.len(), 2);
        assert!(recipe.pretrained);
        // A flag's value is parsed the way the TOML recipe spells it, and a wrong one is named.
        let error = flags(&["--optimizer", "sgd"]).err().unwrap().to_string();
        assert!(error.contains("--optimizer") && error.contains("sgd"), "{error}");
        assert!(flags(&["--metadata", "none"]).unwrap().metadata.unwrap().0.is_empty());
        // Every key of the recipe is a flag.
        let help = <Cli as clap::CommandFactory>::command().render_long_help().to_string();
        let recipe = TrainConfig::default().to_toml().unwrap();
        for key in recipe.lines().filter_map(|line| line.split_once(" = ").map(|(key, _)| key.trim())).filter(|k| !k.starts_with('[')) {
            assert!(help.contains(&format!("--{}", key.replace('_', "-"))), "no flag for {key}");
        }
    }

    #[test]
    fn augment_flags_take_presets_booleans_and_operations() {
        let given = flags(&["--augment", "seed-002", "--augment-ops", "hair:count=8"]).unwrap();
        let mut recipe = TrainConfig::default();
        given.apply(&mut recipe);
        assert_eq!(recipe.augment, AugmentPreset::Seed002);
        assert_eq!(recipe.augment_ops.as_str(), "hair:count=8");
        let mut recipe = TrainConfig::default();
        flags(&["--augment", "false"]).unwrap().apply(&mut recipe);
        assert_eq!(recipe.augment, AugmentPreset::None);
        let error = flags(&["--augment-ops", "hair:count=-1"]).err().unwrap().to_string();
        assert!(error.contains("count"), "{error}");
        assert!(flags(&["--augment", "maybe"]).is_err());
        // Source-aware keys take the recipe's spellings.
        let given = flags(&["--source-shares", "isic2017=1,ham10000=0.5", "--checkpoint-selection", "worst-source", "--colour-constancy", "gray-world"]).unwrap();
        assert_eq!(given.given(), ["source_shares", "colour_constancy", "checkpoint_selection"]);
        assert!(flags(&["--checkpoint-selection", "best"]).is_err());
    }
}
