//! # zap-build: zap code from `.proto` files, without `protoc`
//!
//! For a build script: parses `.proto` files with [protox] (pure Rust),
//! fills the codegen model that `#[derive(zap::Message)]` and
//! `#[zap::service]` also fill, and writes one Rust file per package into
//! `OUT_DIR`, which the crate includes with `zap::include_proto!`.
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     zap_build::compile_protos(&["proto/vm.proto"], &["proto"])?;
//!     Ok(())
//! }
//! ```
//!
//! ```ignore
//! // src/lib.rs
//! pub mod vm {
//!     zap::include_proto!("vm");
//! }
//! ```
//!
//! ## What is generated
//!
//! - **Messages**: a struct per message, with the same representation as
//!   a derived message (`zap::Message`, a `{Name}View<'a>`, `Clone`,
//!   `Debug`, `PartialEq`, `Default`). The layout is *numbered*: field
//!   number `n` sits at offset `8·n` after a size word, so adding a field
//!   with any new number keeps old and new peers compatible both ways
//!   (docs/FORMAT.md). Nested messages and enums go in a module named after
//!   their parent, as with prost.
//! - **Types**: `double`/`float` → `f64`/`f32`; `int32`, `sint32`,
//!   `sfixed32` → `i32`; `int64`, `sint64`, `sfixed64` → `i64`; `uint32`,
//!   `fixed32` → `u32`; `uint64`, `fixed64` → `u64`; `bool`; `string` →
//!   `zap::Text` and `bytes` → `bytes::Bytes` (both slices of the received
//!   frame, no copy); enums → an open newtype `struct E(pub i32)` with a
//!   constant per value (unknown values survive); a message field →
//!   `Option<M>`; `repeated T` → `Vec<T>`; `optional T` → `Option<T>`.
//!   `map` fields and `oneof` groups are rejected with an error naming
//!   the field, as are `optional` 64-bit scalars whose next field number is
//!   taken (their presence byte needs it) and field numbers above 4096.
//! - **Services**: the service trait (async methods taking
//!   `zap::Request<A>`, returning `zap::Response<B>`; streams as
//!   `zap::Streaming<A>` in and `zap::BoxStream<B>` out), a
//!   `{Service}Server<T>` to add to a `zap::Router`, a `{Service}Client`,
//!   and a `{service}_methods` module of path constants. Method names are
//!   snake case (`GetBlock` → `get_block`).
//!
//! - **gRPC** (feature `grpc`, then `Config::grpc(true)`): a `pb` module per package with the prost
//!   twin of every message (prost-build, `bytes` as `Bytes`), conversions
//!   both ways (`zap::grpc::Convert`: `Text` ↔ `String`, enums ↔ `i32`,
//!   the rest field by field), a `{service}_protobuf()` table that
//!   `Router::add_service` records so `Server::grpc` can answer
//!   `application/grpc`, and `{Service}Client::grpc(tonic_channel)` to call
//!   any gRPC server. The generated client also implements the service
//!   trait (a proxy) over either wire.
//!
//! Generated code reaches the runtime only through `::zap::codegen` and
//! writes every other path absolutely, so any message, service or method
//! name compiles (a service named `Result`, methods `Drop` and `Clone`,
//! keywords as names).

#![forbid(unsafe_code)]

mod front;
mod matcher;

use std::fmt;
use std::path::{Path, PathBuf};

pub use zap_codegen::ServiceParts;

/// Compiles `protos` (found under `includes`) into `OUT_DIR` with the
/// default [`Config`].
pub fn compile_protos(
    protos: &[impl AsRef<Path>],
    includes: &[impl AsRef<Path>],
) -> Result<(), Error> {
    Config::new().compile_protos(protos, includes)
}

/// Code generation settings, in the manner of `prost-build`.
///
/// Paths in matchers are fully qualified proto names: `"."` matches
/// everything, `".pkg"` everything in a package, `".pkg.Msg"` a message
/// (and, for field attributes, all its fields), `".pkg.Msg.field"` one
/// field.
#[derive(Clone, Debug)]
pub struct Config {
    out_dir: Option<PathBuf>,
    type_attributes: Vec<(String, String)>,
    field_attributes: Vec<(String, String)>,
    extern_paths: Vec<(String, String)>,
    parts: ServiceParts,
    rerun_if_changed: bool,
    grpc: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

impl Config {
    /// Servers and clients on, output to `OUT_DIR`.
    pub fn new() -> Self {
        Config {
            out_dir: None,
            type_attributes: Vec::new(),
            field_attributes: Vec::new(),
            extern_paths: Vec::new(),
            parts: ServiceParts::default(),
            rerun_if_changed: true,
            grpc: false,
        }
    }

    /// Where generated files go (default: the `OUT_DIR` environment
    /// variable that cargo sets for build scripts).
    pub fn out_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// Adds `attribute` (Rust source, e.g. `#[derive(Eq)]`) to the
    /// messages and enums that `path` matches.
    pub fn type_attribute(
        &mut self,
        path: impl Into<String>,
        attribute: impl Into<String>,
    ) -> &mut Self {
        self.type_attributes.push((path.into(), attribute.into()));
        self
    }

    /// Adds `attribute` to the fields that `path` matches.
    pub fn field_attribute(
        &mut self,
        path: impl Into<String>,
        attribute: impl Into<String>,
    ) -> &mut Self {
        self.field_attributes.push((path.into(), attribute.into()));
        self
    }

    /// Uses existing Rust types for the proto types under `proto_path`
    /// (e.g. `".common"` → `"::common_types"`) instead of expecting them
    /// to be generated in this crate.
    pub fn extern_path(
        &mut self,
        proto_path: impl Into<String>,
        rust_path: impl Into<String>,
    ) -> &mut Self {
        self.extern_paths
            .push((proto_path.into(), rust_path.into()));
        self
    }

    /// Whether to generate `{Service}Server` adapters (default: yes).
    pub fn build_server(&mut self, yes: bool) -> &mut Self {
        self.parts.server = yes;
        self
    }

    /// Whether to generate `{Service}Client` types (default: yes).
    pub fn build_client(&mut self, yes: bool) -> &mut Self {
        self.parts.client = yes;
        self
    }

    /// Whether to generate the gRPC fallback's parts (default: no; an
    /// explicit switch, so that cargo's feature unification cannot turn
    /// it on for a crate that did not ask): a `pb` module of prost messages per package,
    /// `zap::grpc::Convert` between each message and its prost twin, a
    /// `{service}_protobuf()` table per service that `add_service`
    /// registers, and `{Service}Client::grpc(channel)`. The crate then
    /// needs zap's `grpc` feature. Types must come from the same package.
    #[cfg(feature = "grpc")]
    pub fn grpc(&mut self, yes: bool) -> &mut Self {
        self.grpc = yes;
        self
    }

    /// Whether to print `cargo:rerun-if-changed` for each input file
    /// (default: yes).
    pub fn emit_rerun_if_changed(&mut self, yes: bool) -> &mut Self {
        self.rerun_if_changed = yes;
        self
    }

    /// Parses `protos` (searched in `includes`) and writes one file per
    /// package, `{package}.rs` (`_.rs` without a package).
    pub fn compile_protos(
        &self,
        protos: &[impl AsRef<Path>],
        includes: &[impl AsRef<Path>],
    ) -> Result<(), Error> {
        let mut compiler = protox::Compiler::new(includes.iter().map(AsRef::as_ref))
            .map_err(|e| Error::new(e.to_string()))?;
        compiler.include_imports(true).include_source_info(true);
        for p in protos {
            compiler
                .open_file(p.as_ref())
                .map_err(|e| Error::new(e.to_string()))?;
            if self.rerun_if_changed {
                println!("cargo:rerun-if-changed={}", p.as_ref().display());
            }
        }
        let generate: Vec<String> = compiler
            .files()
            .filter(|f| !f.is_import())
            .map(|f| f.name().to_owned())
            .collect();
        if self.rerun_if_changed {
            for f in compiler.files() {
                if let Some(p) = f.path() {
                    println!("cargo:rerun-if-changed={}", p.display());
                }
            }
        }
        let fds = compiler.file_descriptor_set();
        let files = self.generate(&fds, &generate)?;
        let out = match &self.out_dir {
            Some(d) => d.clone(),
            None => std::env::var_os("OUT_DIR")
                .map(PathBuf::from)
                .ok_or_else(|| {
                    Error::new("OUT_DIR is not set; call out_dir() outside build scripts")
                })?,
        };
        std::fs::create_dir_all(&out).map_err(|e| Error::new(format!("{}: {e}", out.display())))?;
        for (name, code) in files {
            let path = out.join(&name);
            // Rewriting an unchanged file would make cargo rebuild.
            if std::fs::read_to_string(&path).ok().as_deref() == Some(code.as_str()) {
                continue;
            }
            std::fs::write(&path, code)
                .map_err(|e| Error::new(format!("{}: {e}", path.display())))?;
        }
        Ok(())
    }

    /// Generates the files for `generate` (file names as in the set) from
    /// a descriptor set that holds them and their imports: `(file name,
    /// source)` pairs, one per package, sorted by name.
    pub fn generate(
        &self,
        fds: &prost_types::FileDescriptorSet,
        generate: &[String],
    ) -> Result<Vec<(String, String)>, Error> {
        front::generate(self, fds, generate)
    }
}

/// Why generation failed: the message names the file, type or field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    fn new(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
