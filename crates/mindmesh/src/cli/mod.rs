//! The client side of the `mindmesh` binary: commands that talk to a running server over
//! gRPC (`cascades`), and those that need no server at all (`receipt verify`).

pub mod backup;
pub mod cascades;
pub mod receipt;

use anyhow::Context as _;
use tonic::transport::Channel;

/// Where the server is and who is asking: `--server` / `MINDMESH_SERVER`, `--token` /
/// `MINDMESH_TOKEN`.
#[derive(clap::Args, Debug, Clone)]
pub struct Connection {
    /// The server's address.
    #[arg(
        long,
        env = "MINDMESH_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// A bearer token (get one with `mindmesh token --role operator`).
    #[arg(long, env = "MINDMESH_TOKEN", hide_env_values = true)]
    pub token: String,
}

impl Connection {
    /// A channel to the server.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        Channel::from_shared(self.server.clone())
            .with_context(|| format!("--server {:?} is not an address", self.server))?
            .connect()
            .await
            .with_context(|| format!("cannot reach the server at {}", self.server))
    }

    /// `message` with the bearer token.
    pub fn request<T>(&self, message: T) -> anyhow::Result<tonic::Request<T>> {
        let mut request = tonic::Request::new(message);
        let value = format!("Bearer {}", self.token.trim())
            .parse()
            .context("--token holds characters a header cannot carry")?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

/// A gRPC error as a person reads it: the code, the server's message, and what to do
/// about the common ones.
pub fn explain(status: tonic::Status) -> anyhow::Error {
    let hint = match status.code() {
        tonic::Code::Unauthenticated => {
            "\nhint: pass a valid token with --token or MINDMESH_TOKEN (`mindmesh token --role operator` issues one)"
        }
        tonic::Code::PermissionDenied => "\nhint: this needs a token with another role or tenant",
        tonic::Code::Unavailable => "\nhint: is the server running at --server / MINDMESH_SERVER?",
        _ => "",
    };
    anyhow::anyhow!("{:?}: {}{hint}", status.code(), status.message())
}
