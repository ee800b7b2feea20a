use zap::{BoxStream, Request, Response, Status};

#[zap::service(package = "t", color = "red")]
pub trait Bad {
    fn not_async(&self, r: Request<u32>) -> Result<Response<u32>, Status>;
    async fn no_self(r: Request<u32>) -> Result<Response<u32>, Status>;
    async fn mut_self(&mut self, r: Request<u32>) -> Result<Response<u32>, Status>;
    async fn two_args(&self, a: Request<u32>, b: Request<u32>) -> Result<Response<u32>, Status>;
    async fn not_request(&self, a: u32) -> Result<Response<u32>, Status>;
    async fn bare_return(&self, a: Request<u32>) -> u32;
    async fn no_return(&self, a: Request<u32>);
    async fn generic<T>(&self, a: Request<T>) -> Result<Response<u32>, Status>;
    async fn with_body(&self, a: Request<u32>) -> Result<Response<BoxStream<u32>>, Status> {
        todo!()
    }
    const C: u32;
}

#[zap::service(package = "t")]
pub trait Dup {
    async fn get(&self, a: Request<u32>) -> Result<Response<u32>, Status>;
    #[zap(name = "Get")]
    async fn get_again(&self, a: Request<u32>) -> Result<Response<u32>, Status>;
}

fn main() {}
