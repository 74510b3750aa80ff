//! Between the SDK and the plain types of `api.rs`: an SDK error sorted
//! into an [`Ec2Error`], filters and tags both ways, an instance read into
//! an [`InstanceInfo`], and the pages of a `Describe*` listing.

use std::collections::BTreeMap;
use std::error::Error as StdError;

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use chrono::{DateTime, Utc};

use super::super::api::{Filter, InstanceInfo};
use super::super::error::Ec2Error;

/// Sorts an SDK error: EC2's code when it answered, else whether the request
/// could be sent at all.
pub(super) fn sdk_error<E, R>(action: &str, error: SdkError<E, R>) -> Ec2Error
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
    SdkError<E, R>: StdError + Send + Sync + 'static,
    R: HasStatus,
{
    let status = error.raw_response().map(HasStatus::status_code);
    if let Some(code) = error.code() {
        let message = error.message().unwrap_or_default().to_owned();
        return Ec2Error::from_code(action, code, &message, status);
    }
    let retryable = match &error {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(failure) => failure.is_io() || failure.is_timeout(),
        SdkError::ServiceError(_) => true,
        _ => false,
    };
    if let (SdkError::ServiceError(_), Some(status)) = (&error, status) {
        return Ec2Error::from_code(action, &format!("HTTP {status}"), "", Some(status));
    }
    if retryable {
        Ec2Error::Transport {
            action: action.to_owned(),
            source: Box::new(error),
        }
    } else {
        // Credentials that cannot be loaded land here: retrying would not help.
        Ec2Error::Request {
            action: action.to_owned(),
            source: Box::new(error),
        }
    }
}

/// The HTTP status of a raw response.
pub(crate) trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_ec2::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

pub(super) fn filters(filters: &[Filter]) -> Option<Vec<aws_sdk_ec2::types::Filter>> {
    Some(
        filters
            .iter()
            .map(|filter| {
                aws_sdk_ec2::types::Filter::builder()
                    .name(&filter.name)
                    .set_values(Some(filter.values.clone()))
                    .build()
            })
            .collect(),
    )
}

pub(super) fn tag_spec(resource: ResourceType, tags: &[(String, String)]) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(tag_list(tags)))
        .build()
}

pub(super) fn lifecycle(value: Option<&aws_sdk_ec2::types::InstanceLifecycle>) -> Option<String> {
    value.map(|lifecycle| lifecycle.as_str().to_owned())
}

pub(super) fn tag_list(tags: &[(String, String)]) -> Vec<Tag> {
    tags.iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect()
}

pub(super) fn tags(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|tag| {
            Some((
                tag.key()?.to_owned(),
                tag.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

fn time(value: &aws_sdk_ec2::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(value.secs(), value.subsec_nanos())
}

pub(super) fn missing(action: &str, field: &str) -> Ec2Error {
    Ec2Error::MissingField {
        action: action.to_owned(),
        field: field.to_owned(),
    }
}

pub(super) fn instance_info(instance: &aws_sdk_ec2::types::Instance) -> Option<InstanceInfo> {
    Some(InstanceInfo {
        id: instance.instance_id()?.to_owned(),
        state: instance
            .state()
            .and_then(|state| state.name())
            .map(|name| name.as_str().to_owned())
            .unwrap_or_default(),
        instance_type: instance.instance_type().map(|t| t.as_str().to_owned()),
        availability_zone: instance
            .placement()
            .and_then(|placement| placement.availability_zone())
            .map(str::to_owned),
        public_ip: instance.public_ip_address().map(str::to_owned),
        private_ip: instance.private_ip_address().map(str::to_owned),
        launch_time: instance.launch_time().and_then(time),
        tags: tags(instance.tags()),
        block_devices: instance
            .block_device_mappings()
            .iter()
            .filter_map(|mapping| {
                Some((
                    mapping.device_name()?.to_owned(),
                    mapping.ebs()?.volume_id()?.to_owned(),
                ))
            })
            .collect(),
        state_reason: instance
            .state_reason()
            .and_then(|reason| reason.message())
            .and_then(non_empty),
        spot_request_id: instance.spot_instance_request_id().and_then(non_empty),
    })
}

/// Every page of a paginated `Describe*` call: `page` sends the request for
/// one page (given the previous page's token) and returns its items and the
/// next token; an absent or empty token ends the listing.
pub(super) async fn all_pages<T, F, Fut>(mut page: F) -> Result<Vec<T>, Ec2Error>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<String>), Ec2Error>>,
{
    let mut items = Vec::new();
    let mut token = None;
    loop {
        let (page, next) = page(token).await?;
        items.extend(page);
        token = next.filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(items);
        }
    }
}

/// EC2 (and its emulator) sends empty strings for absent texts.
pub(super) fn non_empty(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pages_are_followed_until_the_token_is_absent_or_empty() {
        let mut asked = Vec::new();
        let items = all_pages(|token: Option<String>| {
            asked.push(token.clone());
            let (page, next) = match token.as_deref() {
                None => (vec![1, 2], Some("b")),
                Some("b") => (vec![3], Some("")),
                other => panic!("asked for page {other:?}"),
            };
            async move { Ok((page, next.map(str::to_owned))) }
        })
        .await
        .unwrap();
        assert_eq!(items, [1, 2, 3]);
        assert_eq!(asked, [None, Some("b".to_owned())]);
    }

    #[tokio::test]
    async fn a_failed_page_fails_the_listing() {
        let result: Result<Vec<u8>, _> = all_pages(|_| async {
            Err(Ec2Error::from_code(
                "DescribeVolumes",
                "UnauthorizedOperation",
                "no",
                None,
            ))
        })
        .await;
        assert!(result.is_err());
    }
}
