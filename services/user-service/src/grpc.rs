//! The gRPC edge: protobuf in, domain types through the store, protobuf out.

use agora_kit::{
    auth::JwtKeys,
    identity::{Caller, Role},
};
use agora_proto::user::{
    self as pb, GetMeRequest, GetUserRequest, LoginRequest, LoginResponse, RegisterRequest,
    user_service_server::UserService,
};
use tonic::{Request, Response, Status};

use crate::{
    Error,
    domain::{Email, NewUser, User},
    password,
    store::Store,
};

#[derive(Debug, Clone)]
pub struct UserApi {
    store: Store,
    keys: JwtKeys,
}

impl UserApi {
    pub fn new(store: Store, keys: JwtKeys) -> Self {
        Self { store, keys }
    }
}

#[tonic::async_trait]
impl UserService for UserApi {
    async fn register(&self, request: Request<RegisterRequest>) -> Result<Response<pb::User>, Status> {
        let req = request.into_inner();
        let new = NewUser::parse(&req.email, &req.password, &req.name).map_err(Error::from)?;
        let hash = password::hash(new.password.clone()).await.map_err(Error::from)?;
        let user = self.store.create(&new, &hash, Role::User).await?;
        tracing::info!(user_id = %user.id, "user registered");
        Ok(Response::new(to_proto(user)))
    }

    async fn login(&self, request: Request<LoginRequest>) -> Result<Response<LoginResponse>, Status> {
        let req = request.into_inner();
        let found = match Email::parse(&req.email) {
            Ok(email) => self.store.find_by_email(email.as_str()).await?,
            Err(_) => None,
        };
        let (user, phc) = match found {
            Some((user, phc)) => (Some(user), phc),
            None => (None, password::DUMMY_HASH.to_owned()),
        };
        let matches = password::verify(req.password, phc).await.map_err(Error::from)?;
        let user = user.filter(|_| matches).ok_or(Error::BadCredentials)?;
        let token = self.keys.issue(&user.id, user.role.as_str());
        Ok(Response::new(LoginResponse {
            access_token: token,
            token_type: "Bearer".to_owned(),
            expires_in: i64::try_from(self.keys.ttl().as_secs()).unwrap_or(i64::MAX),
        }))
    }

    async fn get_me(&self, request: Request<GetMeRequest>) -> Result<Response<pb::User>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let id = caller.user_id()?;
        let user = self.store.find_by_id(id).await?.ok_or_else(|| Error::NotFound(id.to_owned()))?;
        Ok(Response::new(to_proto(user)))
    }

    async fn get_user(&self, request: Request<GetUserRequest>) -> Result<Response<pb::User>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let id =
            agora_kit::id::parse_id("id", &request.get_ref().id).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        if !caller.may_access(&id) {
            return Err(Error::PermissionDenied.into());
        }
        let user = self.store.find_by_id(&id).await?.ok_or(Error::NotFound(id))?;
        Ok(Response::new(to_proto(user)))
    }
}

fn to_proto(user: User) -> pb::User {
    let role = match user.role {
        Role::Admin => pb::Role::Admin,
        Role::User | Role::Service => pb::Role::User,
    };
    pb::User {
        id: user.id,
        email: user.email,
        name: user.name,
        role: role as i32,
        created_at: Some(agora_kit::time::to_timestamp(user.created_at)),
    }
}
