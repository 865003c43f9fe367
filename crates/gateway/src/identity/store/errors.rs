//! Each store failure as the catalog error an API answers with.

use super::*;

impl StoreError {
    /// The catalog error for this failure.
    pub fn to_gateway_error(&self) -> crate::error::GatewayError {
        use crate::error::GatewayError;
        use candor_catalog::{FieldError, codes};
        match self {
            StoreError::NotFound { resource, id } => GatewayError::new(codes::RESOURCE_NOT_FOUND)
                .param("resource", *resource)
                .param("id", id.clone())
                .param("scope", "")
                .param("hint", ""),
            StoreError::Duplicate {
                resource,
                field,
                value,
            } => GatewayError::new(codes::DUPLICATE_RESOURCE)
                .param(
                    "resource",
                    format!(
                        "{} {resource}",
                        if resource.starts_with(['a', 'e', 'i', 'o', 'u']) {
                            "An"
                        } else {
                            "A"
                        }
                    ),
                )
                .param("field", *field)
                .param("value", value.clone())
                .param("existing", ""),
            StoreError::Invalid { field, reason } => GatewayError::new(codes::VALIDATION_FAILED)
                .param("count", "1")
                .param("summary", format!("{field} {reason}"))
                .field(FieldError {
                    location: "body".into(),
                    pointer: format!("#/{field}"),
                    name: (*field).to_owned(),
                    reason: "invalid".into(),
                    detail: reason.clone(),
                }),
            StoreError::Backend(e) => {
                tracing::error!(target: "candor::store", error = %e, "store failure");
                GatewayError::new(codes::INTERNAL_ERROR)
                    .param("stage", "identity store")
                    .source(crate::error::ErrorSource::Internal)
            }
        }
    }
}
