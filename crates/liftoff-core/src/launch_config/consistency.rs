//! Checks across blocks: a destination against the environment's cloud, region
//! and project; kaniko's context store against the environment; the
//! deprecated registry against `builder.destination`.

use super::builder::{BuilderConfig, BuilderType};
use super::environment::EnvironmentConfig;
use super::image::ImageDestination;
use super::reader::{Issues, article};
use super::registry::{RegistryConfig, RegistryType};

pub(crate) fn check(
    is: &mut Issues,
    builder: Option<&BuilderConfig>,
    environment: Option<&EnvironmentConfig>,
    registry: Option<&RegistryConfig>,
) {
    if let Some(d) = builder.and_then(|b| b.destination.as_ref()) {
        destination_matches(is, "builder.destination", d, environment, true);
    }
    let has_destination = is.has_spot("builder.destination");
    if let Some(r) = registry {
        let uri_path = if r.uri.is_some() && is.has_spot("registry.url") { "registry.url" } else { "registry.uri" };
        if let Some(d) = &r.uri {
            // an ignored registry still has to be right, but its host needs no warning
            destination_matches(is, uri_path, d, environment, !has_destination);
        }
        if has_destination {
            is.warn("registry", None, "ignored: builder.destination replaces the registry block");
        } else {
            is.warn(
                "registry",
                None,
                "the registry block is deprecated: set builder.destination to the image repository",
            );
        }
        let needs = match r.registry_type {
            // the setup document: "type: gcr # requires a gcp environment"
            Some(RegistryType::Gcr) => Some(("gcp", "a gcr registry")),
            // a bare repository name takes its region from the environment
            Some(RegistryType::Ecr) if r.repository.is_some() => Some(("aws", "an ecr registry given by repository")),
            _ => None,
        };
        if let Some((cloud, what)) = needs
            && environment.map(EnvironmentConfig::type_name) != Some(cloud)
        {
            is.error("registry.type", None, format!("{what} needs environment.type: {cloud}"));
        }
    }
    if let Some(b) = builder
        && b.builder_type == BuilderType::Kaniko
    {
        if let Some(store) = &b.build_context_store {
            let cloud = store.environment_type();
            match environment.map(EnvironmentConfig::type_name) {
                Some(t) if t == cloud => {}
                Some(t) => is.error(
                    "builder.build-context-store",
                    Some(&store.to_string()),
                    format!("this store is reached with {cloud} credentials but environment.type is {t}"),
                ),
                None => is.error(
                    "builder.build-context-store",
                    Some(&store.to_string()),
                    format!("uploading the build context needs credentials: add environment.type: {cloud}"),
                ),
            }
        }
        let registry_target = ["registry.uri", "registry.url", "registry.repository"].iter().any(|p| is.has_spot(p));
        if !has_destination && !registry_target {
            is.error("builder.destination", None, "the kaniko builder pushes what it builds: set builder.destination");
        }
    }
}

fn destination_matches(
    is: &mut Issues,
    path: &str,
    d: &ImageDestination,
    environment: Option<&EnvironmentConfig>,
    warn_unknown_host: bool,
) {
    let shown = d.uri();
    let cloud = match d {
        ImageDestination::Ecr { .. } => "aws",
        ImageDestination::Gar { .. } => "gcp",
        ImageDestination::Acr { .. } => "azure",
        ImageDestination::Oci { .. } if !warn_unknown_host => return,
        ImageDestination::Oci { host, .. } => {
            is.warn(
                path,
                Some(&shown),
                format!("'{host}' is not ECR, Artifact Registry or ACR: it is pushed to as any OCI registry, with the credentials of the agent's docker login (`liftoff doctor` checks a push)"),
            );
            return;
        }
    };
    match (d, environment) {
        (_, None | Some(EnvironmentConfig::Local)) => {}
        (ImageDestination::Ecr { region, .. }, Some(EnvironmentConfig::Aws { region: env_region, .. })) => {
            if region != env_region {
                is.error(
                    path,
                    Some(&shown),
                    format!("the uri's region '{region}' differs from environment.region '{env_region}'"),
                );
            }
        }
        (
            ImageDestination::Gar { region, project, .. },
            Some(EnvironmentConfig::Gcp { region: env_region, project: env_project }),
        ) => {
            if let Some(env_region) = env_region
                && region != env_region
            {
                is.error(
                    path,
                    Some(&shown),
                    format!("the uri's region '{region}' differs from environment.region '{env_region}'"),
                );
            }
            if let Some(env_project) = env_project
                && project != env_project
            {
                is.error(
                    path,
                    Some(&shown),
                    format!("the uri's project '{project}' differs from environment.project '{env_project}'"),
                );
            }
        }
        (ImageDestination::Acr { .. }, Some(EnvironmentConfig::Azure { .. })) => {}
        (_, Some(env)) => is.error(
            path,
            Some(&shown),
            format!(
                "{} {} registry needs {} {cloud} environment, not {}",
                article(d.kind()),
                d.kind(),
                article(cloud),
                env.type_name()
            ),
        ),
    }
}
