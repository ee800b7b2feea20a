use zap::{Request, Response, Status};

struct NotAMessage;

/// A request type that is not a message is reported at the type.
#[zap::service(package = "t")]
pub trait Typed {
    async fn call(&self, a: Request<NotAMessage>) -> Result<Response<u32>, Status>;
}

fn main() {}
