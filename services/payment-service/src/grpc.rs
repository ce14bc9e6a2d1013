//! The gRPC edge of payment-service.

use agora_kit::{identity::Caller, money::Money, page};
use agora_proto::payment::{
    self as pb, GetWalletRequest, ListPaymentsRequest, ListPaymentsResponse, TopUpWalletRequest,
    payment_service_server::PaymentService,
};
use tonic::{Request, Response, Status};

use crate::{
    Error,
    domain::{ParseError, Payment, PaymentStatus, TopUp, Wallet},
    store::Store,
};

#[derive(Debug, Clone)]
pub struct PaymentApi {
    store: Store,
}

impl PaymentApi {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

/// The wallet owner a request is about: the caller, or (for admins) the named user. Another
/// user's wallet answers as one that does not exist.
fn wallet_owner(caller: &Caller, requested: &str) -> Result<String, Error> {
    if requested.is_empty() {
        return Ok(caller.user_id()?.to_owned());
    }
    let user_id = agora_kit::id::parse_id("user_id", requested).map_err(|e| ParseError::Field(e.to_string()))?;
    if caller.may_see(&format!("wallet of user {user_id}"), &user_id) {
        Ok(user_id)
    } else {
        Err(Error::NoWallet(user_id))
    }
}

fn field_error(e: impl ToString) -> Error {
    Error::Invalid(ParseError::Field(e.to_string()))
}

#[tonic::async_trait]
impl PaymentService for PaymentApi {
    async fn get_wallet(&self, request: Request<GetWalletRequest>) -> Result<Response<pb::Wallet>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let owner = wallet_owner(&caller, &request.get_ref().user_id)?;
        Ok(Response::new(wallet_to_proto(self.store.wallet(&owner).await?)))
    }

    async fn top_up_wallet(&self, request: Request<TopUpWalletRequest>) -> Result<Response<pb::Wallet>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let owner = wallet_owner(&caller, &req.user_id)?;
        let top_up = TopUp::parse(Money::from_proto(req.amount).map_err(|e| e.to_string())).map_err(Error::from)?;
        let wallet = self.store.top_up(&owner, top_up).await?;
        tracing::info!(user_id = %owner, amount = %top_up.amount(), "wallet topped up");
        Ok(Response::new(wallet_to_proto(wallet)))
    }

    async fn list_payments(
        &self,
        request: Request<ListPaymentsRequest>,
    ) -> Result<Response<ListPaymentsResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let req = request.into_inner();
        if !req.order_id.is_empty() {
            let order_id = agora_kit::id::parse_id("order_id", &req.order_id).map_err(field_error)?;
            let payments = match self.store.payment_for_order(&order_id).await? {
                // Another user's order has no payments to show, as an unknown one has none.
                Some(p) if !caller.may_see(&format!("payments of order {order_id}"), &p.user_id) => vec![],
                Some(p) => vec![to_proto(p)],
                None => vec![],
            };
            return Ok(Response::new(ListPaymentsResponse { payments, next_page_token: String::new() }));
        }
        let user_id = caller.user_id()?.to_owned();
        let size = page::page_size(req.page_size).map_err(field_error)?;
        let before = page::decode_token(&req.page_token).map_err(field_error)?;
        let (payments, more) = self.store.list(&user_id, before.as_deref(), size).await?;
        let next_page_token = page::next_token(more, payments.last().map(|last| last.id.as_str()));
        Ok(Response::new(ListPaymentsResponse {
            payments: payments.into_iter().map(to_proto).collect(),
            next_page_token,
        }))
    }
}

fn wallet_to_proto(wallet: Wallet) -> pb::Wallet {
    pb::Wallet { user_id: wallet.user_id, balance: Some(wallet.balance.to_proto()) }
}

fn to_proto(p: Payment) -> pb::Payment {
    let status = match p.status {
        PaymentStatus::Succeeded => pb::PaymentStatus::Succeeded,
        PaymentStatus::Declined => pb::PaymentStatus::Declined,
        PaymentStatus::Refunded => pb::PaymentStatus::Refunded,
    };
    pb::Payment {
        id: p.id,
        order_id: p.order_id,
        user_id: p.user_id,
        amount: Some(p.amount.to_proto()),
        status: status as i32,
        decline_reason: p.decline_reason,
        created_at: Some(agora_kit::time::to_timestamp(p.created_at)),
    }
}
