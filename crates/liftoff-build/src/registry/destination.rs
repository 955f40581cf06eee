//! From `launch-config.yaml` to a [`Destination`]: `builder.destination`
//! wins over the deprecated `registry` block; a URI picks its registry kind
//! by host (inventory §5: ECR, Artifact Registry, ACR, else any OCI
//! registry); a cloud registry needs that cloud's environment, in the
//! URI's region.

use super::{AcrRegistry, GarRegistry, OciRegistry, Registry, RegistryError, TokenSource};
use liftoff_cloud::{CloudEnv, CloudError};
use liftoff_core::launch_config::{AgentConfig, EnvironmentConfig, ImageDestination, RegistryType};
use std::path::Path;
use std::sync::Arc;

/// Where built images go.
#[derive(Clone)]
pub enum Destination {
    /// No registry configured: images stay in the agent's engine, nothing is pushed.
    LocalEngine,
    Registry(Arc<dyn Registry>),
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::LocalEngine => f.write_str("LocalEngine"),
            Self::Registry(r) => f.debug_tuple("Registry").field(&r.describe()).finish(),
        }
    }
}

/// [`from_config`]'s answer: the destination, and what the agent should
/// warn about (a registry block that was ignored or overridden).
#[derive(Debug)]
pub struct ChosenDestination {
    pub destination: Destination,
    pub warnings: Vec<String>,
}

/// What the configuration asks for, before any credentials are looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryTarget {
    LocalEngine,
    /// A repository URI, classified by host.
    Uri(ImageDestination),
    /// `registry: {type: ecr, repository: r}`: the account comes from the credentials.
    EcrRepository(String),
    /// `registry: {type: gcr, repository: r, image-name: i}`: region and project come from the environment.
    GarRepository {
        repository: String,
        image: String,
    },
}

/// The destination `cfg` asks for, and the warnings that go with it.
pub fn target(cfg: &AgentConfig) -> (RegistryTarget, Vec<String>) {
    let mut warnings = Vec::new();
    let destination = cfg.builder.as_ref().and_then(|b| b.destination.clone());
    if let Some(d) = destination {
        if cfg.registry.is_some() {
            warnings.push(format!("the registry block is ignored: builder.destination ({d}) overrides it"));
        }
        return (RegistryTarget::Uri(d), warnings);
    }
    let Some(r) = &cfg.registry else { return (RegistryTarget::LocalEngine, warnings) };
    let t = match (r.registry_type, &r.uri) {
        (Some(RegistryType::Local), _) => RegistryTarget::LocalEngine,
        // the reader has checked that a typed uri is of its type
        (_, Some(uri)) => RegistryTarget::Uri(uri.clone()),
        (Some(RegistryType::Ecr), None) => match &r.repository {
            Some(repo) => RegistryTarget::EcrRepository(repo.clone()),
            None => RegistryTarget::LocalEngine,
        },
        (Some(RegistryType::Gcr), None) => match (&r.repository, &r.image_name) {
            (Some(repository), Some(image)) => {
                RegistryTarget::GarRepository { repository: repository.clone(), image: image.clone() }
            }
            _ => RegistryTarget::LocalEngine,
        },
        (Some(RegistryType::Acr), None) => RegistryTarget::LocalEngine,
        (None, None) => {
            warnings.push(
                "the registry block is ignored: it has neither type nor uri (images stay in the local engine)".into(),
            );
            RegistryTarget::LocalEngine
        }
    };
    (t, warnings)
}

/// Whether the environment can reach `d`: an ECR registry needs an aws
/// environment in the URI's region, an Artifact Registry one a gcp
/// environment whose region and project (where it names them) agree, an ACR
/// one an azure environment. `env_type` is the resolved environment's type;
/// `env` what the config file says about it.
pub fn check_environment(d: &ImageDestination, env_type: &str, env: Option<&EnvironmentConfig>) -> Result<(), String> {
    let (cloud, kind) = match d {
        ImageDestination::Ecr { .. } => ("aws", "an ECR"),
        ImageDestination::Gar { .. } => ("gcp", "an Artifact Registry"),
        ImageDestination::Acr { .. } => ("azure", "an ACR"),
        ImageDestination::Oci { .. } => return Ok(()),
    };
    if env_type != cloud {
        return Err(format!(
            "{kind} registry is reached with {cloud} credentials, but the environment is {env_type}: set environment.type: {cloud}"
        ));
    }
    match (d, env) {
        (ImageDestination::Ecr { region, .. }, Some(EnvironmentConfig::Aws { region: env_region, .. }))
            if region != env_region =>
        {
            Err(format!("the uri's region '{region}' differs from the aws environment's region '{env_region}'"))
        }
        (ImageDestination::Gar { region, project, .. }, Some(EnvironmentConfig::Gcp { region: r, project: p })) => {
            // left out, they are resolved at run time (gcloud, the credentials): compare what is given
            let (env_region, env_project) = (r.as_ref(), p.as_ref());
            if let Some(r) = env_region
                && r != region
            {
                return Err(format!("the uri's region '{region}' differs from the gcp environment's region '{r}'"));
            }
            if let Some(p) = env_project
                && p != project
            {
                return Err(format!("the uri's project '{project}' differs from the gcp environment's project '{p}'"));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The registry `cfg` pushes to, with `env`'s credentials for a cloud
/// registry and the docker config in `docker_config` (`None`: `$DOCKER_CONFIG`,
/// else `~/.docker`) for any other.
pub async fn from_config(
    cfg: &AgentConfig,
    env: &CloudEnv,
    docker_config: Option<&Path>,
) -> Result<ChosenDestination, RegistryError> {
    let (target, warnings) = target(cfg);
    let env_cfg = cfg.environment.as_ref();
    let registry: Arc<dyn Registry> = match target {
        RegistryTarget::LocalEngine => {
            return Ok(ChosenDestination { destination: Destination::LocalEngine, warnings });
        }
        RegistryTarget::Uri(d) => {
            let describe = format!("{} {}", kind_name(&d), d.uri());
            check_environment(&d, env.type_name(), env_cfg)
                .map_err(|message| RegistryError::Other { registry: describe, message })?;
            match d {
                ImageDestination::Oci { host, repository } => {
                    let dir =
                        docker_config.map(Path::to_path_buf).or_else(liftoff_run::registry_auth::default_config_dir);
                    Arc::new(OciRegistry::new(&host, &repository, dir)?)
                }
                ImageDestination::Ecr { account, region, repository } => {
                    ecr(&account, &region, &repository, env_cfg).await?
                }
                ImageDestination::Gar { region, project, repository, image } => {
                    Arc::new(GarRegistry::new(&region, &project, &repository, &image, gcp_tokens(env)?)?)
                }
                ImageDestination::Acr { registry, repository } => {
                    Arc::new(AcrRegistry::new(&registry, &repository, azure_tokens(env)?)?)
                }
            }
        }
        RegistryTarget::EcrRepository(repository) => {
            let registry = format!("ECR repository {repository}");
            let Some(EnvironmentConfig::Aws { region, .. }) = env_cfg.filter(|_| env.type_name() == "aws") else {
                let message =
                    format!("an ECR repository given by name needs an aws environment, not {}", env.type_name());
                return Err(RegistryError::Other { registry, message });
            };
            ecr_by_name(&repository, region, env_cfg).await?
        }
        RegistryTarget::GarRepository { repository, image } => {
            let registry = format!("Artifact Registry repository {repository}");
            // region and project as the environment resolved them (config, gcloud, credentials)
            let Some((region, project)) = gcp_location(env) else {
                let message = format!(
                    "an Artifact Registry repository given by name needs a gcp environment, not {}",
                    env.type_name()
                );
                return Err(RegistryError::Other { registry, message });
            };
            Arc::new(GarRegistry::new(&region, &project, &repository, &image, gcp_tokens(env)?)?)
        }
    };
    Ok(ChosenDestination { destination: Destination::Registry(registry), warnings })
}

fn kind_name(d: &ImageDestination) -> &'static str {
    match d {
        ImageDestination::Ecr { .. } => "ECR",
        ImageDestination::Gar { .. } => "Artifact Registry",
        ImageDestination::Acr { .. } => "ACR",
        ImageDestination::Oci { .. } => "registry",
    }
}

#[cfg(feature = "aws")]
async fn ecr(
    account: &str,
    region: &str,
    repository: &str,
    env: Option<&EnvironmentConfig>,
) -> Result<Arc<dyn Registry>, RegistryError> {
    let sdk = aws_sdk_config(region, env).await?;
    Ok(Arc::new(super::EcrRegistry::new(account, region, repository, &sdk)?))
}

#[cfg(feature = "aws")]
async fn ecr_by_name(
    repository: &str,
    region: &str,
    env: Option<&EnvironmentConfig>,
) -> Result<Arc<dyn Registry>, RegistryError> {
    let sdk = aws_sdk_config(region, env).await?;
    Ok(Arc::new(super::EcrRegistry::for_repository(repository, &sdk).await?))
}

#[cfg(not(feature = "aws"))]
async fn ecr(_: &str, _: &str, _: &str, _: Option<&EnvironmentConfig>) -> Result<Arc<dyn Registry>, RegistryError> {
    Err(CloudError::NotBuiltIn("aws").into())
}

#[cfg(not(feature = "aws"))]
async fn ecr_by_name(_: &str, _: &str, _: Option<&EnvironmentConfig>) -> Result<Arc<dyn Registry>, RegistryError> {
    Err(CloudError::NotBuiltIn("aws").into())
}

/// The AWS SDK configuration: the same credential chain (aws-config's,
/// with the config's profile) the environment resolved, in `region`.
#[cfg(feature = "aws")]
async fn aws_sdk_config(region: &str, env: Option<&EnvironmentConfig>) -> Result<aws_config::SdkConfig, RegistryError> {
    let profile = match env {
        Some(EnvironmentConfig::Aws { profile, .. }) => profile.as_deref(),
        _ => None,
    };
    Ok(liftoff_cloud::AwsEnv::builder(region).profile(profile).load().await.sdk_config().clone())
}

/// The region and project a gcp environment resolved.
fn gcp_location(env: &CloudEnv) -> Option<(String, String)> {
    match env {
        #[cfg(feature = "gcp")]
        CloudEnv::Gcp(g) => Some((g.region().to_string(), g.project().to_string())),
        _ => None,
    }
}

/// GCP access tokens from the environment's application default credentials.
fn gcp_tokens(env: &CloudEnv) -> Result<Arc<dyn TokenSource>, RegistryError> {
    match env {
        #[cfg(feature = "gcp")]
        CloudEnv::Gcp(g) => Ok(Arc::new(GcpTokens(g.clone()))),
        _ => Err(CloudError::Config(format!("the {} environment gives no GCP access tokens", env.type_name())).into()),
    }
}

/// Microsoft Entra access tokens from the environment's credential chain.
fn azure_tokens(env: &CloudEnv) -> Result<Arc<dyn TokenSource>, RegistryError> {
    match env {
        #[cfg(feature = "azure")]
        CloudEnv::Azure(a) => Ok(Arc::new(AzureTokens(a.clone()))),
        _ => {
            Err(CloudError::Config(format!("the {} environment gives no Microsoft Entra tokens", env.type_name()))
                .into())
        }
    }
}

#[cfg(feature = "gcp")]
struct GcpTokens(liftoff_cloud::GcpEnv);

#[cfg(feature = "gcp")]
#[async_trait::async_trait]
impl TokenSource for GcpTokens {
    /// Application default credentials carry the cloud-platform scope, which covers Artifact Registry.
    async fn access_token(&self, _scopes: &[&str]) -> Result<liftoff_cloud::AccessToken, CloudError> {
        self.0.access_token().await
    }
}

#[cfg(feature = "azure")]
struct AzureTokens(liftoff_cloud::AzureEnv);

#[cfg(feature = "azure")]
#[async_trait::async_trait]
impl TokenSource for AzureTokens {
    async fn access_token(&self, scopes: &[&str]) -> Result<liftoff_cloud::AccessToken, CloudError> {
        let scope = scopes.first().copied().unwrap_or("https://management.azure.com/.default");
        self.0.access_token(scope).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use liftoff_core::launch_config::check_file_text;

    fn cfg(yaml: &str) -> AgentConfig {
        match check_file_text(yaml) {
            Ok(r) => r.config,
            Err(e) => panic!("{yaml}: {e:?}"),
        }
    }

    fn uri(s: &str) -> ImageDestination {
        ImageDestination::parse(s).unwrap()
    }

    #[test]
    fn the_four_sample_uris_classify_as_acr_gar_ecr_and_oci() {
        // inventory checklist item 26 (the reference's test_build.py URIs)
        let kinds: Vec<_> = [
            "https://test.azurecr.io/repository",
            "us-central1-docker.pkg.dev/my-project/my-repository/my-image",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/my-repository",
            "registry.example.com/my-repository",
        ]
        .iter()
        .map(|u| {
            let (t, _) = target(&cfg(&format!("builder: {{type: docker, destination: '{u}'}}\n")));
            match t {
                RegistryTarget::Uri(d) => d.kind(),
                other => panic!("{u}: {other:?}"),
            }
        })
        .collect();
        assert_eq!(kinds, ["acr", "gar", "ecr", "oci"]);
    }

    #[test]
    fn acr_uris_and_configs_as_in_the_reference() {
        // inventory checklist item 32
        let c = cfg("environment: {type: azure}\nregistry: {type: acr, uri: 'https://test.azurecr.io/repository'}\n");
        let (RegistryTarget::Uri(d), _) = target(&c) else { panic!() };
        assert_eq!(d.uri(), "test.azurecr.io/repository");
        let ImageDestination::Acr { registry, repository } = &d else { panic!("{d:?}") };
        let tokens: Arc<dyn TokenSource> = Arc::new(NoTokens);
        let acr = AcrRegistry::new(registry, repository, tokens).unwrap();
        assert_eq!((acr.registry_name(), acr.repository()), ("test", "test.azurecr.io/repository"));
        // uri plus a repository name, and an ECR uri, are refused by the reader
        assert!(check_file_text("registry: {type: acr, uri: test.azurecr.io/r, repository: r}\n").is_err());
        assert!(check_file_text("registry: {type: acr, uri: 1.dkr.ecr.us-east-1.amazonaws.com/r}\n").is_err());
    }

    struct NoTokens;
    #[async_trait::async_trait]
    impl TokenSource for NoTokens {
        async fn access_token(&self, _: &[&str]) -> Result<liftoff_cloud::AccessToken, CloudError> {
            Err(CloudError::Config("no tokens in this test".into()))
        }
    }

    #[test]
    fn builder_destination_overrides_the_registry_block_with_a_warning() {
        let c = cfg("builder: {type: docker, destination: registry.example.com/app}\nregistry: {type: local}\n");
        let (t, w) = target(&c);
        assert_eq!(t, RegistryTarget::Uri(uri("registry.example.com/app")));
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("overrides it"), "{w:?}");
        let (t, w) = target(&cfg("builder: {type: docker}\n"));
        assert_eq!((t, w.len()), (RegistryTarget::LocalEngine, 0));
    }

    #[test]
    fn a_registry_block_without_type_pushes_to_its_uri_or_is_ignored() {
        let (t, w) = target(&cfg("registry: {uri: 127.0.0.1:5000/team/app}\n"));
        assert_eq!((t, w.len()), (RegistryTarget::Uri(uri("127.0.0.1:5000/team/app")), 0));
        let (t, w) = target(&cfg("registry: {repository: r}\n"));
        assert_eq!(t, RegistryTarget::LocalEngine);
        assert!(w[0].contains("neither type nor uri"), "{w:?}");
        let (t, _) = target(&cfg("registry: {type: local}\n"));
        assert_eq!(t, RegistryTarget::LocalEngine);
        let c = cfg("environment: {type: aws, region: us-east-1}\nregistry: {type: ecr, repository: r}\n");
        assert_eq!(target(&c).0, RegistryTarget::EcrRepository("r".into()));
    }

    #[test]
    fn cloud_registries_need_their_environment_in_the_same_region() {
        let ecr = uri("123456789012.dkr.ecr.us-east-1.amazonaws.com/r");
        let aws = |region: &str| EnvironmentConfig::Aws { region: region.into(), profile: None };
        assert!(check_environment(&ecr, "aws", Some(&aws("us-east-1"))).is_ok());
        let e = check_environment(&ecr, "aws", Some(&aws("eu-west-1"))).unwrap_err();
        assert_eq!(e, "the uri's region 'us-east-1' differs from the aws environment's region 'eu-west-1'");
        let e = check_environment(&ecr, "local", None).unwrap_err();
        assert!(e.contains("reached with aws credentials, but the environment is local"), "{e}");
        let gar = uri("us-central1-docker.pkg.dev/p/r/i");
        let gcp = |r: &str, p: &str| EnvironmentConfig::Gcp { region: Some(r.into()), project: Some(p.into()) };
        assert!(check_environment(&gar, "gcp", Some(&gcp("us-central1", "p"))).is_ok());
        assert!(check_environment(&gar, "gcp", Some(&gcp("europe-west1", "p"))).unwrap_err().contains("region"));
        assert!(check_environment(&gar, "gcp", Some(&gcp("us-central1", "q"))).unwrap_err().contains("project 'p'"));
        assert!(check_environment(&gar, "aws", None).is_err());
        let acr = uri("x.azurecr.io/r");
        assert!(check_environment(&acr, "azure", None).is_ok());
        assert!(check_environment(&acr, "gcp", None).unwrap_err().contains("environment.type: azure"));
        assert!(check_environment(&uri("registry.example.com/r"), "local", None).is_ok());
    }

    #[tokio::test]
    async fn from_config_refuses_a_cloud_registry_without_its_environment() {
        let c = cfg("registry: {type: acr, uri: x.azurecr.io/r}\n");
        let e = from_config(&c, &CloudEnv::Local, None).await.expect_err("refused").to_string();
        assert!(e.starts_with("ACR x.azurecr.io/r: an ACR registry is reached with azure credentials"), "{e}");
        let c = cfg("builder: {type: docker}\n");
        let chosen = from_config(&c, &CloudEnv::Local, None).await.unwrap();
        assert!(matches!(chosen.destination, Destination::LocalEngine));
        let c = cfg("builder: {type: docker, destination: 127.0.0.1:5000/app}\n");
        let Destination::Registry(r) = from_config(&c, &CloudEnv::Local, None).await.unwrap().destination else {
            panic!()
        };
        assert_eq!((r.repository(), r.describe()), ("127.0.0.1:5000/app", "registry 127.0.0.1:5000/app".to_string()));
    }
}
