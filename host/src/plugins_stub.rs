#![allow(missing_docs, dead_code, unused)]
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use futures::future::BoxFuture;
#[derive(Debug, Clone)] pub struct HttpRequest { pub method: String, pub url: String, pub headers: Vec<(String, String)>, pub body: Vec<u8> }
#[derive(Debug, Clone)] pub struct HttpResponse { pub status: u16, pub headers: Vec<(String, String)>, pub body: Vec<u8> }
#[derive(Debug, Clone)] pub struct CallContext { pub tenant: String, pub endpoint: String, pub event_id: String, pub event_type: String, pub attempt: u32, pub timestamp: u64 }
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)] pub enum PluginKind { Authentication, Security, Transform, TokenProvider }
#[derive(Debug, Clone, serde::Serialize)] pub struct PluginInfo { pub name: String, pub version: String, pub kind: PluginKind, pub summary: String, pub config_schema: serde_json::Value }
pub struct Token { pub value: String, pub expires_in_seconds: Option<u64> }
#[derive(Debug, thiserror::Error)] pub enum PluginError { #[error("x")] InvalidConfig(String), #[error("x")] NotFound(String) }
pub enum LogLevel { Debug, Info, Warn, Error }
pub trait HostServices: Send + Sync + 'static {
    fn jose_sign(&self, ctx: &CallContext, alg: &str, header_json: &str, payload: &[u8]) -> BoxFuture<'static, Result<String, String>>;
    fn jose_encrypt(&self, ctx: &CallContext, alg: &str, enc: &str, recipient: &str, header_json: &str, payload: &[u8]) -> BoxFuture<'static, Result<String, String>>;
    fn get_token(&self, ctx: &CallContext, provider: &str, config: &str) -> BoxFuture<'static, Result<String, String>>;
    fn send_outbound(&self, ctx: &CallContext, allowed_hosts: Vec<String>, request: HttpRequest) -> BoxFuture<'static, Result<HttpResponse, String>>;
    fn log(&self, plugin: &str, ctx: Option<&CallContext>, level: LogLevel, message: &str);
}
pub struct RuntimeLimits { pub call_deadline: Duration, pub max_memory_bytes: usize, pub max_concurrent_instances: u32, pub max_body_bytes: usize }
pub struct PluginRuntime;
impl PluginRuntime { pub fn new(l: RuntimeLimits) -> Result<Arc<Self>, PluginError> { todo!() } }
pub struct LoadedPlugin;
impl LoadedPlugin {
  pub fn info(&self) -> &PluginInfo { todo!() }
  pub async fn validate(&self, config: &str, host: Arc<dyn HostServices>) -> Result<(), PluginError> { todo!() }
  pub async fn apply(&self, ctx: &CallContext, config: &str, request: HttpRequest, host: Arc<dyn HostServices>) -> Result<HttpRequest, PluginError> { todo!() }
  pub async fn fetch_token(&self, ctx: &CallContext, config: &str, host: Arc<dyn HostServices>) -> Result<Token, PluginError> { todo!() }
}
#[derive(Debug, Clone, serde::Serialize)] pub struct PluginStatus { pub name: String }
pub struct WatchGuard;
pub struct PluginRegistry;
impl PluginRegistry {
  pub fn new(runtime: Arc<PluginRuntime>, cache_dir: PathBuf, tenant_dir: PathBuf) -> Arc<Self> { todo!() }
  pub async fn add_builtin(&self, name: &str, bytes: &'static [u8]) -> Result<(), PluginError> { todo!() }
  pub async fn watch_directory(self: &Arc<Self>, dir: PathBuf) -> Result<WatchGuard, PluginError> { todo!() }
  pub async fn load_tenant_plugins(&self) -> Result<(), PluginError> { todo!() }
  pub async fn put_tenant_plugin(&self, tenant: &str, name: &str, bytes: &[u8]) -> Result<PluginStatus, PluginError> { todo!() }
  pub async fn delete_tenant_plugin(&self, tenant: &str, name: &str) -> Result<bool, PluginError> { todo!() }
  pub fn resolve(&self, tenant: &str, name: &str) -> Result<Arc<LoadedPlugin>, PluginError> { todo!() }
  pub fn list(&self, tenant: Option<&str>) -> Vec<PluginStatus> { todo!() }
}
