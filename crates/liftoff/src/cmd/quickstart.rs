//! `liftoff quickstart`: a throwaway server and agent run the hello example end to end.

use anyhow::{Context, bail};
use clap::Args;
use liftoff_agent::AgentOptions;
use liftoff_client::Client;
use liftoff_core::api::{CreateJob, CreateQueue, LaunchRequest};
use liftoff_core::job::CodeSource;
use liftoff_core::{ItemState, JobSourceSpec, ResourceType};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const QUEUE: &str = "quickstart";
/// Bound on the whole wait for the run, so a stuck step fails clearly.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Data directory [default: a new liftoff-quickstart-<time> directory under the system temp dir].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Keep the server and agent running after the run, until ctrl-c.
    #[arg(long)]
    keep: bool,
}

pub async fn run(args: QuickstartArgs) -> anyhow::Result<()> {
    let data_dir = match args.data_dir {
        Some(d) => d,
        None => {
            let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            std::env::temp_dir().join(format!("liftoff-quickstart-{secs}"))
        }
    };
    std::fs::create_dir_all(&data_dir).with_context(|| format!("failed to create {}", data_dir.display()))?;
    let example = example_dir()?;

    step(&format!("starting a server with data in {}", data_dir.display()));
    let mut cfg = liftoff_server::ServerConfig::new(data_dir.clone());
    cfg.listen = ([127, 0, 0, 1], 0).into();
    cfg.print_admin_key = false;
    let server = liftoff_server::start(cfg).await.context("failed to start the server")?;
    let base_url = server.base_url();
    let key = match server.admin_key.clone() {
        Some(k) => k,
        None => crate::connect::read_key_file(&data_dir.join("admin.key"))?,
    };
    let client = Client::new(&base_url, &key, crate::connect::DEFAULT_ENTITY).context("failed to set up a client")?;

    step(&format!("creating queue '{QUEUE}' (local-process)"));
    ensure_queue(&client).await?;

    step(&format!("creating a code job from {}", example.display()));
    let (digest, _) = super::job::upload_dir(&client, &example).await?;
    let code = CodeSource {
        digest,
        entrypoint: vec!["python3".into(), "main.py".into()],
        build_context: None,
        dockerfile: None,
        base_image: None,
    };
    let job = client
        .create_job(&CreateJob {
            project: "default".into(),
            name: "hello".into(),
            source: JobSourceSpec { code: Some(code), ..Default::default() },
            aliases: vec![],
            runtime: None,
        })
        .await
        .context("failed to create the hello job")?;

    step(&format!("launching {} on '{QUEUE}'", job.full_name()));
    let launched = client
        .launch(
            QUEUE,
            &LaunchRequest {
                job: job.full_name(),
                run_config: serde_json::json!({"greeting": "hello from liftoff"}),
                ..Default::default()
            },
        )
        .await
        .context("failed to launch the hello job")?;

    step("starting an agent with a key of the agent role");
    let (stop_agent, stopped) = tokio::sync::oneshot::channel::<()>();
    let opts = AgentOptions {
        queues: vec![QUEUE.to_string()],
        max_jobs: 1,
        work_dir: data_dir.join("work"),
        grace: Duration::from_secs(10),
        claim_wait: Duration::from_secs(20),
        heartbeat: Duration::from_secs(5),
        hostname: super::agent::hostname(),
        lock_dir: data_dir.clone(),
        supervisor: Some(super::agent::supervisor()?),
        ..AgentOptions::default()
    };
    // The agent gets a key of its own with the agent role: it can claim,
    // renew, report and log, and nothing else. Revoked when quickstart ends.
    let agent_key = client.create_key("agent").await.context("failed to create an agent key")?;
    let agent_client = Client::new(&base_url, &agent_key.secret, crate::connect::DEFAULT_ENTITY)
        .context("failed to set up the agent's client")?;
    let mut agent = tokio::spawn(liftoff_agent::run_agent(agent_client, opts, async move {
        let _ = stopped.await;
    }));

    step(&format!("following the logs of run {}", launched.run_id));
    let mut agent_done = false;
    let followed = tokio::select! {
        r = super::run::print_logs(&client, &launched.item_id, true) => r,
        r = &mut agent => Err({
            agent_done = true;
            match r {
            Ok(Ok(())) => anyhow::anyhow!("the agent stopped before the run ended"),
            Ok(Err(e)) => anyhow::Error::new(e).context("the agent failed"),
            Err(e) => anyhow::Error::new(e).context("the agent task failed"),
            }
        }),
        _ = tokio::time::sleep(RUN_TIMEOUT) => Err(anyhow::anyhow!("the run did not end within {} s", RUN_TIMEOUT.as_secs())),
    };
    let item = match followed {
        Ok(()) => client.get_item(&launched.item_id).await.context("failed to get the run"),
        Err(e) => Err(e),
    };

    if let Ok(item) = &item {
        step("done");
        eprintln!("state:     {}", item.state);
        eprintln!("exit code: {}", crate::output::opt(item.exit_code));
        eprintln!("run id:    {}", item.run_id);
        eprintln!("item id:   {}", item.id);
        eprintln!("server:    {base_url}");
        eprintln!("data dir:  {}", data_dir.display());
        if args.keep {
            eprintln!(
                "web UI:    {base_url}/runs/{} (sign in with the key in {})",
                item.run_id,
                data_dir.join("admin.key").display()
            );
        } else {
            eprintln!(
                "web UI:    run `liftoff quickstart --keep` to keep the server up and see this run at {base_url}/"
            );
        }
    }
    if args.keep && item.is_ok() {
        step("server and agent keep running; press ctrl-c to stop them");
        eprintln!(
            "try:       export LIFTOFF_BASE_URL={base_url} LIFTOFF_API_KEY=$(cat {})",
            data_dir.join("admin.key").display()
        );
        eprintln!("           liftoff run list");
        crate::signal::shutdown_requested().await;
    }

    step("stopping the agent and the server");
    let _ = stop_agent.send(());
    if !agent_done {
        match tokio::time::timeout(Duration::from_secs(30), &mut agent).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => eprintln!("warning: the agent failed: {e:#}"),
            Ok(Err(e)) => eprintln!("warning: the agent task failed: {e}"),
            Err(_) => {
                eprintln!("warning: the agent did not stop within 30 s");
                agent.abort();
            }
        }
    }
    if let Err(e) = client.revoke_key(&agent_key.key.id).await {
        eprintln!("warning: could not revoke the quickstart's agent key {}: {e}", agent_key.key.id);
    }
    server.shutdown().await;

    let item = item?;
    if item.state != ItemState::Finished {
        bail!(
            "the run ended in state {}{}",
            item.state,
            item.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
        );
    }
    Ok(())
}

fn step(what: &str) {
    eprintln!("==> {what}");
}

/// Creates the queue, or keeps it when a reused data dir already has it.
async fn ensure_queue(client: &Client) -> anyhow::Result<()> {
    let req = CreateQueue {
        name: QUEUE.into(),
        resource: ResourceType::LocalProcess,
        config: liftoff_core::api::empty_object(),
        template_variables: vec![],
        prioritization: false,
    };
    match client.create_queue(&req).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_conflict() => Ok(()),
        Err(e) => Err(e).context("failed to create the quickstart queue"),
    }
}

/// `./examples/hello` when run from a checkout, else the one next to this crate's sources.
fn example_dir() -> anyhow::Result<PathBuf> {
    let local = Path::new("examples/hello");
    if local.join("main.py").is_file() {
        return Ok(local.to_path_buf());
    }
    let built_in = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/hello"));
    if built_in.join("main.py").is_file() {
        return Ok(std::fs::canonicalize(built_in).unwrap_or_else(|_| built_in.to_path_buf()));
    }
    bail!("cannot find examples/hello: run quickstart from the liftoff source tree")
}
