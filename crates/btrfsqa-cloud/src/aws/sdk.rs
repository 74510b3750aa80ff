//! [`Ec2Api`] over `aws_sdk_ec2::Client`: builds requests, reads answers into
//! the plain types of `api.rs`, and sorts errors. No logic beyond that.

use std::collections::BTreeMap;
use std::error::Error as StdError;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, DefaultTargetCapacityType, EbsBlockDevice,
    FleetLaunchTemplateConfigRequest, FleetLaunchTemplateOverridesRequest,
    FleetLaunchTemplateSpecificationRequest, FleetOnDemandAllocationStrategy, FleetType,
    HttpTokensState, InstanceInterruptionBehavior, InstanceMarketOptionsRequest,
    InstanceMetadataOptionsRequest, InstanceNetworkInterfaceSpecification, InstanceType,
    IpPermission, IpRange, Ipv6Range, LaunchTemplateBlockDeviceMappingRequest,
    LaunchTemplateEbsBlockDeviceRequest, LaunchTemplateHttpTokensState,
    LaunchTemplateInstanceMetadataOptionsRequest,
    LaunchTemplateInstanceNetworkInterfaceSpecificationRequest,
    LaunchTemplateTagSpecificationRequest, MarketType, OnDemandOptionsRequest, Placement,
    RequestLaunchTemplateData, ResourceType, ShutdownBehavior, SpotAllocationStrategy,
    SpotInstanceInterruptionBehavior, SpotInstanceType, SpotMarketOptions, SpotOptionsRequest, Tag,
    TagSpecification, TargetCapacitySpecificationRequest, VolumeType,
};
use chrono::{DateTime, Utc};

use super::api::{
    Ec2Api, Filter, FleetError, FleetInstance, FleetOutcome, FleetRequest, ImageInfo, InstanceInfo,
    LaunchRequest, Market, ResourceInfo, SpotRequestInfo, TemplateRequest,
};
use super::error::Ec2Error;

/// The real EC2, through the SDK.
#[derive(Debug, Clone)]
pub(crate) struct SdkEc2 {
    client: Client,
}

impl SdkEc2 {
    pub fn new(client: Client) -> Self {
        SdkEc2 { client }
    }
}

/// Sorts an SDK error: EC2's code when it answered, else whether the request
/// could be sent at all.
fn sdk_error<E, R>(action: &str, error: SdkError<E, R>) -> Ec2Error
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

fn filters(filters: &[Filter]) -> Option<Vec<aws_sdk_ec2::types::Filter>> {
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

fn tag_spec(resource: ResourceType, tags: &[(String, String)]) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(tag_list(tags)))
        .build()
}

fn gib(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// The launch template's data: image, key, group, volumes, user data,
/// IMDSv2, terminate on shutdown, and the run's tags on instances and
/// volumes. No instance type and no market: those are the fleet's.
fn template_data(request: &TemplateRequest) -> RequestLaunchTemplateData {
    let volume = |device: &str, gib_size: u32, volume_type: &str| {
        LaunchTemplateBlockDeviceMappingRequest::builder()
            .device_name(device)
            .ebs(
                LaunchTemplateEbsBlockDeviceRequest::builder()
                    .volume_size(gib(gib_size))
                    .volume_type(VolumeType::from(volume_type))
                    .delete_on_termination(true)
                    .build(),
            )
            .build()
    };
    let mut mappings = vec![volume(
        &request.root_device_name,
        request.root_volume_gib,
        "gp3",
    )];
    mappings.extend(
        request
            .data_device_names
            .iter()
            .map(|device| volume(device, request.volume_gib, &request.volume_type)),
    );
    let launch_tags = |resource| {
        LaunchTemplateTagSpecificationRequest::builder()
            .resource_type(resource)
            .set_tags(Some(tag_list(&request.tags)))
            .build()
    };
    let mut data = RequestLaunchTemplateData::builder()
        .image_id(&request.image_id)
        .key_name(&request.key_name)
        .set_block_device_mappings(Some(mappings))
        .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
        .user_data(aws_smithy_types::base64::encode(&request.user_data))
        // IMDSv2 only; the instance gets no role, so it holds no credential.
        .metadata_options(
            LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_tokens(LaunchTemplateHttpTokensState::Required)
                .build(),
        )
        .tag_specifications(launch_tags(ResourceType::Instance))
        .tag_specifications(launch_tags(ResourceType::Volume));
    data = if request.in_subnet {
        // As RunInstances: a subnet of a non-default VPC hands out public
        // addresses only when asked through the interface; the fleet's
        // overrides put the interface in the subnet.
        data.network_interfaces(
            LaunchTemplateInstanceNetworkInterfaceSpecificationRequest::builder()
                .device_index(0)
                .groups(&request.security_group_id)
                .associate_public_ip_address(request.associate_public_ip)
                .delete_on_termination(true)
                .build(),
        )
    } else {
        data.security_group_ids(&request.security_group_id)
    };
    data.build()
}

fn lifecycle(value: Option<&aws_sdk_ec2::types::InstanceLifecycle>) -> Option<String> {
    value.map(|lifecycle| lifecycle.as_str().to_owned())
}

fn tag_list(tags: &[(String, String)]) -> Vec<Tag> {
    tags.iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect()
}

fn tags(tags: &[Tag]) -> BTreeMap<String, String> {
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

fn missing(action: &str, field: &str) -> Ec2Error {
    Ec2Error::MissingField {
        action: action.to_owned(),
        field: field.to_owned(),
    }
}

fn instance_info(instance: &aws_sdk_ec2::types::Instance) -> Option<InstanceInfo> {
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

/// EC2 (and its emulator) sends empty strings for absent texts.
/// Every page of a paginated `Describe*` call: `page` sends the request for
/// one page (given the previous page's token) and returns its items and the
/// next token; an absent or empty token ends the listing.
async fn all_pages<T, F, Fut>(mut page: F) -> Result<Vec<T>, Ec2Error>
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

fn non_empty(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

#[async_trait::async_trait]
impl Ec2Api for SdkEc2 {
    async fn describe_images(
        &self,
        ids: &[String],
        owners: &[String],
        filter_list: &[Filter],
    ) -> Result<Vec<ImageInfo>, Ec2Error> {
        const ACTION: &str = "DescribeImages";
        all_pages(|token| async move {
            let answer = self
                .client
                .describe_images()
                .set_image_ids((!ids.is_empty()).then(|| ids.to_vec()))
                .set_owners((!owners.is_empty()).then(|| owners.to_vec()))
                .set_filters(filters(filter_list))
                .set_next_token(token)
                .send()
                .await
                .map_err(|error| sdk_error(ACTION, error))?;
            let images: Vec<_> = answer
                .images()
                .iter()
                .filter_map(|image| {
                    Some(ImageInfo {
                        id: image.image_id()?.to_owned(),
                        name: image.name().map(str::to_owned),
                        creation_date: image.creation_date().map(str::to_owned),
                        root_device_name: image.root_device_name().map(str::to_owned),
                    })
                })
                .collect();
            Ok((images, answer.next_token().map(str::to_owned)))
        })
        .await
    }

    async fn default_vpc(&self) -> Result<Option<String>, Ec2Error> {
        let answer = self
            .client
            .describe_vpcs()
            .set_filters(filters(&[Filter::new("isDefault", ["true"])]))
            .send()
            .await
            .map_err(|error| sdk_error("DescribeVpcs", error))?;
        Ok(answer
            .vpcs()
            .iter()
            .find_map(|vpc| vpc.vpc_id().map(str::to_owned)))
    }

    async fn subnet_vpc(&self, subnet_id: &str) -> Result<String, Ec2Error> {
        const ACTION: &str = "DescribeSubnets";
        let answer = self
            .client
            .describe_subnets()
            .subnet_ids(subnet_id)
            .send()
            .await
            .map_err(|error| sdk_error(ACTION, error))?;
        answer
            .subnets()
            .iter()
            .find_map(|subnet| subnet.vpc_id().map(str::to_owned))
            .ok_or_else(|| missing(ACTION, "Subnets[].VpcId"))
    }

    async fn import_key_pair(
        &self,
        name: &str,
        public_key: &str,
        tag_list: &[(String, String)],
    ) -> Result<String, Ec2Error> {
        const ACTION: &str = "ImportKeyPair";
        let answer = self
            .client
            .import_key_pair()
            .key_name(name)
            .public_key_material(Blob::new(public_key.as_bytes()))
            .tag_specifications(tag_spec(ResourceType::KeyPair, tag_list))
            .send()
            .await
            .map_err(|error| sdk_error(ACTION, error))?;
        answer
            .key_pair_id()
            .map(str::to_owned)
            .ok_or_else(|| missing(ACTION, "KeyPairId"))
    }

    async fn describe_key_pairs(
        &self,
        filter_list: &[Filter],
    ) -> Result<Vec<ResourceInfo>, Ec2Error> {
        let answer = self
            .client
            .describe_key_pairs()
            .set_filters(filters(filter_list))
            .send()
            .await
            .map_err(|error| sdk_error("DescribeKeyPairs", error))?;
        Ok(answer
            .key_pairs()
            .iter()
            .filter_map(|key| {
                Some(ResourceInfo {
                    id: key.key_pair_id()?.to_owned(),
                    name: key.key_name().map(str::to_owned),
                    state: None,
                    tags: tags(key.tags()),
                })
            })
            .collect())
    }

    async fn delete_key_pair(
        &self,
        key_pair_id: &str,
        key_name: Option<String>,
    ) -> Result<(), Ec2Error> {
        let request = self.client.delete_key_pair();
        let request = match key_name {
            Some(name) => request.key_name(name),
            None => request.key_pair_id(key_pair_id),
        };
        request
            .send()
            .await
            .map_err(|error| sdk_error("DeleteKeyPair", error))?;
        Ok(())
    }

    async fn create_security_group(
        &self,
        name: &str,
        description: &str,
        vpc_id: &str,
        tag_list: &[(String, String)],
    ) -> Result<String, Ec2Error> {
        const ACTION: &str = "CreateSecurityGroup";
        let answer = self
            .client
            .create_security_group()
            .group_name(name)
            .description(description)
            .vpc_id(vpc_id)
            .tag_specifications(tag_spec(ResourceType::SecurityGroup, tag_list))
            .send()
            .await
            .map_err(|error| sdk_error(ACTION, error))?;
        answer
            .group_id()
            .map(str::to_owned)
            .ok_or_else(|| missing(ACTION, "GroupId"))
    }

    async fn authorize_ssh(&self, group_id: &str, cidr: &str) -> Result<(), Ec2Error> {
        let description = "ssh from the btrfsqa controller";
        let mut permission = IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(22)
            .to_port(22);
        permission = if cidr.contains(':') {
            permission.ipv6_ranges(
                Ipv6Range::builder()
                    .cidr_ipv6(cidr)
                    .description(description)
                    .build(),
            )
        } else {
            permission.ip_ranges(
                IpRange::builder()
                    .cidr_ip(cidr)
                    .description(description)
                    .build(),
            )
        };
        self.client
            .authorize_security_group_ingress()
            .group_id(group_id)
            .ip_permissions(permission.build())
            .send()
            .await
            .map_err(|error| sdk_error("AuthorizeSecurityGroupIngress", error))?;
        Ok(())
    }

    async fn describe_security_groups(
        &self,
        filter_list: &[Filter],
    ) -> Result<Vec<ResourceInfo>, Ec2Error> {
        all_pages(|token| async move {
            let answer = self
                .client
                .describe_security_groups()
                .set_filters(filters(filter_list))
                .set_next_token(token)
                .send()
                .await
                .map_err(|error| sdk_error("DescribeSecurityGroups", error))?;
            let groups: Vec<_> = answer
                .security_groups()
                .iter()
                .filter_map(|group| {
                    Some(ResourceInfo {
                        id: group.group_id()?.to_owned(),
                        name: group.group_name().map(str::to_owned),
                        state: None,
                        tags: tags(group.tags()),
                    })
                })
                .collect();
            Ok((groups, answer.next_token().map(str::to_owned)))
        })
        .await
    }

    async fn delete_security_group(&self, group_id: &str) -> Result<(), Ec2Error> {
        self.client
            .delete_security_group()
            .group_id(group_id)
            .send()
            .await
            .map_err(|error| sdk_error("DeleteSecurityGroup", error))?;
        Ok(())
    }

    async fn run_instance(&self, request: &LaunchRequest) -> Result<String, Ec2Error> {
        const ACTION: &str = "RunInstances";
        let volume = |device: &str, gib: u32, volume_type: &str| {
            BlockDeviceMapping::builder()
                .device_name(device)
                .ebs(
                    EbsBlockDevice::builder()
                        .volume_size(i32::try_from(gib).unwrap_or(i32::MAX))
                        .volume_type(VolumeType::from(volume_type))
                        .delete_on_termination(true)
                        .build(),
                )
                .build()
        };
        let mut mappings = vec![volume(
            &request.root_device_name,
            request.root_volume_gib,
            "gp3",
        )];
        mappings.extend(
            request
                .data_device_names
                .iter()
                .map(|device| volume(device, request.volume_gib, &request.volume_type)),
        );
        let mut builder = self
            .client
            .run_instances()
            .image_id(&request.image_id)
            .instance_type(InstanceType::from(request.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .key_name(&request.key_name)
            .set_block_device_mappings(Some(mappings))
            .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
            .user_data(aws_smithy_types::base64::encode(&request.user_data))
            // IMDSv2 only; the instance gets no role, so it holds no credential.
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .build(),
            )
            .tag_specifications(tag_spec(ResourceType::Instance, &request.tags))
            .tag_specifications(tag_spec(ResourceType::Volume, &request.tags))
            .client_token(&request.client_token);
        if let Market::Spot { max_price } = &request.market {
            builder = builder.instance_market_options(
                InstanceMarketOptionsRequest::builder()
                    .market_type(MarketType::Spot)
                    .spot_options(
                        SpotMarketOptions::builder()
                            .spot_instance_type(SpotInstanceType::OneTime)
                            .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate)
                            .set_max_price(max_price.clone())
                            .build(),
                    )
                    .build(),
            );
        }
        if let Some(subnet) = &request.subnet_id {
            // A subnet of a non-default VPC does not hand out public
            // addresses by itself: ask through the interface.
            builder = builder.network_interfaces(
                InstanceNetworkInterfaceSpecification::builder()
                    .device_index(0)
                    .subnet_id(subnet)
                    .groups(&request.security_group_id)
                    .associate_public_ip_address(request.associate_public_ip)
                    .delete_on_termination(true)
                    .build(),
            );
        } else {
            builder = builder.security_group_ids(&request.security_group_id);
            if let Some(zone) = &request.availability_zone {
                builder = builder.placement(Placement::builder().availability_zone(zone).build());
            }
        }
        let answer = builder
            .send()
            .await
            .map_err(|error| sdk_error(ACTION, error))?;
        answer
            .instances()
            .iter()
            .find_map(|instance| instance.instance_id().map(str::to_owned))
            .ok_or_else(|| missing(ACTION, "Instances[].InstanceId"))
    }

    async fn describe_instances(
        &self,
        ids: &[String],
        filter_list: &[Filter],
    ) -> Result<Vec<InstanceInfo>, Ec2Error> {
        all_pages(|token| async move {
            let answer = self
                .client
                .describe_instances()
                .set_instance_ids((!ids.is_empty()).then(|| ids.to_vec()))
                .set_filters(filters(filter_list))
                .set_next_token(token)
                .send()
                .await
                .map_err(|error| sdk_error("DescribeInstances", error))?;
            let instances: Vec<_> = answer
                .reservations()
                .iter()
                .flat_map(|reservation| reservation.instances())
                .filter_map(instance_info)
                .collect();
            Ok((instances, answer.next_token().map(str::to_owned)))
        })
        .await
    }

    async fn terminate_instances(&self, ids: &[String]) -> Result<(), Ec2Error> {
        self.client
            .terminate_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
            .map_err(|error| sdk_error("TerminateInstances", error))?;
        Ok(())
    }

    async fn reboot_instances(&self, ids: &[String]) -> Result<(), Ec2Error> {
        self.client
            .reboot_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
            .map_err(|error| sdk_error("RebootInstances", error))?;
        Ok(())
    }

    async fn describe_spot_instance_requests(
        &self,
        ids: &[String],
    ) -> Result<Vec<SpotRequestInfo>, Ec2Error> {
        all_pages(|token| async move {
            let answer = self
                .client
                .describe_spot_instance_requests()
                .set_spot_instance_request_ids(Some(ids.to_vec()))
                .set_next_token(token)
                .send()
                .await
                .map_err(|error| sdk_error("DescribeSpotInstanceRequests", error))?;
            let requests: Vec<_> = answer
                .spot_instance_requests()
                .iter()
                .filter_map(|request| {
                    let status = request.status();
                    Some(SpotRequestInfo {
                        id: request.spot_instance_request_id()?.to_owned(),
                        state: request.state().map(|state| state.as_str().to_owned()),
                        status_code: status.and_then(|status| status.code()).and_then(non_empty),
                        status_message: status
                            .and_then(|status| status.message())
                            .and_then(non_empty),
                        instance_id: request.instance_id().and_then(non_empty),
                    })
                })
                .collect();
            Ok((requests, answer.next_token().map(str::to_owned)))
        })
        .await
    }

    async fn describe_volumes(
        &self,
        filter_list: &[Filter],
    ) -> Result<Vec<ResourceInfo>, Ec2Error> {
        all_pages(|token| async move {
            let answer = self
                .client
                .describe_volumes()
                .set_filters(filters(filter_list))
                .set_next_token(token)
                .send()
                .await
                .map_err(|error| sdk_error("DescribeVolumes", error))?;
            let volumes: Vec<_> = answer
                .volumes()
                .iter()
                .filter_map(|volume| {
                    Some(ResourceInfo {
                        id: volume.volume_id()?.to_owned(),
                        name: None,
                        state: volume.state().map(|state| state.as_str().to_owned()),
                        tags: tags(volume.tags()),
                    })
                })
                .collect();
            Ok((volumes, answer.next_token().map(str::to_owned)))
        })
        .await
    }

    async fn delete_volume(&self, volume_id: &str) -> Result<(), Ec2Error> {
        self.client
            .delete_volume()
            .volume_id(volume_id)
            .send()
            .await
            .map_err(|error| sdk_error("DeleteVolume", error))?;
        Ok(())
    }

    async fn spot_price(
        &self,
        instance_type: &str,
        availability_zone: &str,
    ) -> Result<Option<f64>, Ec2Error> {
        let answer = self
            .client
            .describe_spot_price_history()
            .instance_types(InstanceType::from(instance_type))
            .availability_zone(availability_zone)
            .product_descriptions("Linux/UNIX")
            .product_descriptions("Linux/UNIX (Amazon VPC)")
            .start_time(aws_sdk_ec2::primitives::DateTime::from_secs(
                Utc::now().timestamp(),
            ))
            .send()
            .await
            .map_err(|error| sdk_error("DescribeSpotPriceHistory", error))?;
        // With a start time of now, EC2 answers with the price in force.
        Ok(answer
            .spot_price_history()
            .iter()
            .filter(|price| price.availability_zone() == Some(availability_zone))
            .max_by_key(|price| price.timestamp().map(|t| t.secs()))
            .and_then(|price| price.spot_price()?.parse().ok()))
    }

    async fn console_output(&self, instance_id: &str) -> Result<Option<String>, Ec2Error> {
        let answer = self
            .client
            .get_console_output()
            .instance_id(instance_id)
            .latest(true)
            .send()
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            // `Latest` exists only on Nitro instances; ask again without it.
            Err(error)
                if error.code().is_some_and(|code| {
                    code.starts_with("Unsupported") || code.starts_with("InvalidParameter")
                }) =>
            {
                self.client
                    .get_console_output()
                    .instance_id(instance_id)
                    .send()
                    .await
                    .map_err(|error| sdk_error("GetConsoleOutput", error))?
            }
            Err(error) => return Err(sdk_error("GetConsoleOutput", error)),
        };
        Ok(answer
            .output()
            .filter(|output| !output.is_empty())
            .map(super::console::decode_console_output))
    }

    async fn create_launch_template(&self, request: &TemplateRequest) -> Result<String, Ec2Error> {
        const ACTION: &str = "CreateLaunchTemplate";
        let answer = self
            .client
            .create_launch_template()
            .launch_template_name(&request.name)
            .version_description("btrfsqa: the machines of one run")
            .launch_template_data(template_data(request))
            .tag_specifications(tag_spec(ResourceType::LaunchTemplate, &request.tags))
            .client_token(&request.client_token)
            .send()
            .await
            .map_err(|error| sdk_error(ACTION, error))?;
        answer
            .launch_template()
            .and_then(|template| template.launch_template_id())
            .map(str::to_owned)
            .ok_or_else(|| missing(ACTION, "LaunchTemplate.LaunchTemplateId"))
    }

    async fn describe_launch_templates(
        &self,
        filter_list: &[Filter],
    ) -> Result<Vec<ResourceInfo>, Ec2Error> {
        all_pages(|token| async move {
            let answer = self
                .client
                .describe_launch_templates()
                .set_filters(filters(filter_list))
                .set_next_token(token)
                .send()
                .await
                .map_err(|error| sdk_error("DescribeLaunchTemplates", error))?;
            let templates: Vec<_> = answer
                .launch_templates()
                .iter()
                .filter_map(|template| {
                    Some(ResourceInfo {
                        id: template.launch_template_id()?.to_owned(),
                        name: template.launch_template_name().map(str::to_owned),
                        state: None,
                        tags: tags(template.tags()),
                    })
                })
                .collect();
            Ok((templates, answer.next_token().map(str::to_owned)))
        })
        .await
    }

    async fn delete_launch_template(&self, template_id: &str) -> Result<(), Ec2Error> {
        self.client
            .delete_launch_template()
            .launch_template_id(template_id)
            .send()
            .await
            .map_err(|error| sdk_error("DeleteLaunchTemplate", error))?;
        Ok(())
    }

    async fn create_fleet(&self, request: &FleetRequest) -> Result<FleetOutcome, Ec2Error> {
        const ACTION: &str = "CreateFleet";
        let count = i32::try_from(request.count).unwrap_or(i32::MAX);
        let max_price = match &request.market {
            Market::Spot { max_price } => max_price.clone(),
            Market::OnDemand => None,
        };
        let overrides = request
            .overrides
            .iter()
            .map(|choice| {
                FleetLaunchTemplateOverridesRequest::builder()
                    .instance_type(InstanceType::from(choice.instance_type.as_str()))
                    .set_subnet_id(choice.subnet_id.clone())
                    .set_availability_zone(choice.availability_zone.clone())
                    .priority(f64::from(choice.priority))
                    .set_max_price(max_price.clone())
                    .build()
            })
            .collect();
        let capacity = TargetCapacitySpecificationRequest::builder().total_target_capacity(count);
        let mut builder = self
            .client
            .create_fleet()
            .r#type(FleetType::Instant)
            .launch_template_configs(
                FleetLaunchTemplateConfigRequest::builder()
                    .launch_template_specification(
                        FleetLaunchTemplateSpecificationRequest::builder()
                            .launch_template_id(&request.launch_template_id)
                            .version("$Latest")
                            .build(),
                    )
                    .set_overrides(Some(overrides))
                    .build(),
            )
            .tag_specifications(tag_spec(ResourceType::Fleet, &request.tags))
            .client_token(&request.client_token);
        builder = match &request.market {
            // The instance types in the configured order, as far as
            // capacity allows; one-time, terminated on interruption.
            Market::Spot { .. } => builder
                .target_capacity_specification(
                    capacity
                        .default_target_capacity_type(DefaultTargetCapacityType::Spot)
                        .spot_target_capacity(count)
                        .build(),
                )
                .spot_options(
                    SpotOptionsRequest::builder()
                        .allocation_strategy(SpotAllocationStrategy::CapacityOptimizedPrioritized)
                        .instance_interruption_behavior(SpotInstanceInterruptionBehavior::Terminate)
                        .build(),
                ),
            Market::OnDemand => builder
                .target_capacity_specification(
                    capacity
                        .default_target_capacity_type(DefaultTargetCapacityType::OnDemand)
                        .on_demand_target_capacity(count)
                        .build(),
                )
                .on_demand_options(
                    OnDemandOptionsRequest::builder()
                        .allocation_strategy(FleetOnDemandAllocationStrategy::Prioritized)
                        .build(),
                ),
        };
        let answer = builder
            .send()
            .await
            .map_err(|error| sdk_error(ACTION, error))?;
        let instances = answer
            .instances()
            .iter()
            .flat_map(|launched| {
                launched.instance_ids().iter().map(|id| FleetInstance {
                    id: id.clone(),
                    instance_type: launched.instance_type().map(|t| t.as_str().to_owned()),
                    lifecycle: lifecycle(launched.lifecycle()),
                })
            })
            .collect();
        let errors = answer
            .errors()
            .iter()
            .map(|error| {
                let choice = error
                    .launch_template_and_overrides()
                    .and_then(|template| template.overrides());
                FleetError {
                    instance_type: choice
                        .and_then(|choice| choice.instance_type())
                        .map(|t| t.as_str().to_owned()),
                    place: choice
                        .and_then(|choice| choice.subnet_id().or(choice.availability_zone()))
                        .and_then(non_empty),
                    lifecycle: lifecycle(error.lifecycle()),
                    code: error
                        .error_code()
                        .and_then(non_empty)
                        .unwrap_or_else(|| "unknown".to_owned()),
                    message: error.error_message().unwrap_or_default().trim().to_owned(),
                }
            })
            .collect();
        Ok(FleetOutcome {
            fleet_id: answer.fleet_id().and_then(non_empty),
            instances,
            errors,
        })
    }

    async fn describe_fleets(&self, ids: &[String]) -> Result<Vec<ResourceInfo>, Ec2Error> {
        all_pages(|token| async move {
            let answer = self
                .client
                .describe_fleets()
                .set_fleet_ids((!ids.is_empty()).then(|| ids.to_vec()))
                .set_next_token(token)
                .send()
                .await
                .map_err(|error| sdk_error("DescribeFleets", error))?;
            let fleets: Vec<_> = answer
                .fleets()
                .iter()
                .filter_map(|fleet| {
                    Some(ResourceInfo {
                        id: fleet.fleet_id()?.to_owned(),
                        name: None,
                        state: fleet.fleet_state().map(|state| state.as_str().to_owned()),
                        tags: tags(fleet.tags()),
                    })
                })
                .collect();
            Ok((fleets, answer.next_token().map(str::to_owned)))
        })
        .await
    }

    async fn delete_fleet(&self, fleet_id: &str) -> Result<(), Ec2Error> {
        const ACTION: &str = "DeleteFleets";
        let answer = self
            .client
            .delete_fleets()
            .fleet_ids(fleet_id)
            .terminate_instances(true)
            .send()
            .await
            .map_err(|error| sdk_error(ACTION, error))?;
        match answer.unsuccessful_fleet_deletions().first() {
            None => Ok(()),
            Some(refused) => {
                let error = refused.error();
                Err(Ec2Error::from_code(
                    ACTION,
                    error
                        .and_then(|error| error.code())
                        .map_or("unexpectedError", |code| code.as_str()),
                    error.and_then(|error| error.message()).unwrap_or_default(),
                    None,
                ))
            }
        }
    }

    async fn create_tags(
        &self,
        resources: &[String],
        tag_pairs: &[(String, String)],
    ) -> Result<(), Ec2Error> {
        self.client
            .create_tags()
            .set_resources(Some(resources.to_vec()))
            .set_tags(Some(tag_list(tag_pairs)))
            .send()
            .await
            .map_err(|error| sdk_error("CreateTags", error))?;
        Ok(())
    }
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
