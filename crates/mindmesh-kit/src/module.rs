//! The one contract between a service crate and the binary that runs it.
//!
//! Each of the five service crates implements [`ServiceModule`] once; the binary keeps a
//! list of them and does the same for each service it runs: open its database with
//! [`ServiceContext::open_module`] (which calls [`ServiceModule::migrate`]), then
//! [`ServiceModule::prepare`], then [`ServiceModule::start`], and serves the gRPC
//! services named by [`ServiceModule::grpc_services`].

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tonic::service::RoutesBuilder;

use crate::Service;
use crate::bus::consume::ConsumerStats;
use crate::context::ServiceContext;
use crate::error::Result;
use crate::subject_api::SubjectProvider;

/// What a started service hands back to the binary.
#[derive(Default)]
pub struct Started {
    /// What the service does for data-subject rights (access, erasure, …), where it
    /// holds personal data; the process's `SubjectData` service asks it.
    pub subject: Option<Arc<dyn SubjectProvider>>,
    /// The counters of its event consumer, where it consumes events.
    pub consumer: Option<Arc<ConsumerStats>>,
}

/// One Mindmesh service as the binary sees it.
#[async_trait::async_trait]
pub trait ServiceModule: Send + Sync {
    /// Which of the five services this is.
    fn service(&self) -> Service;

    /// The fully qualified names of the gRPC services it serves (from the generated
    /// code's `SERVICE_NAME`), for the health service.
    fn grpc_services(&self) -> &'static [&'static str];

    /// Brings its database's schema up to date.
    async fn migrate(&self, db: &DatabaseConnection) -> Result<()>;

    /// Readies its database before it serves (for example, seals what an older version
    /// kept in the clear). Nothing by default.
    async fn prepare(&self, _ctx: &ServiceContext) -> Result<()> {
        Ok(())
    }

    /// Starts its background tasks (outbox relay, consumer, schedules) and adds its
    /// gRPC services to `routes`.
    fn start(&self, ctx: &ServiceContext, routes: &mut RoutesBuilder) -> Result<Started>;
}
