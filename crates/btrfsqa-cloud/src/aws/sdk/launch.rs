//! The requests that launch instances: RunInstances for one machine, and
//! the launch template and CreateFleet for a run's machines at once, with
//! what CreateFleet answers read back.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::operation::create_fleet::CreateFleetOutput;
use aws_sdk_ec2::operation::create_fleet::builders::CreateFleetFluentBuilder;
use aws_sdk_ec2::operation::run_instances::builders::RunInstancesFluentBuilder;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, DefaultTargetCapacityType, EbsBlockDevice,
    FleetLaunchTemplateConfigRequest, FleetLaunchTemplateOverridesRequest,
    FleetLaunchTemplateSpecificationRequest, FleetOnDemandAllocationStrategy, FleetType,
    HttpTokensState, InstanceInterruptionBehavior, InstanceMarketOptionsRequest,
    InstanceMetadataOptionsRequest, InstanceNetworkInterfaceSpecification, InstanceType,
    LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateHttpTokensState, LaunchTemplateInstanceMetadataOptionsRequest,
    LaunchTemplateInstanceNetworkInterfaceSpecificationRequest,
    LaunchTemplateTagSpecificationRequest, MarketType, OnDemandOptionsRequest, Placement,
    RequestLaunchTemplateData, ResourceType, ShutdownBehavior, SpotAllocationStrategy,
    SpotInstanceInterruptionBehavior, SpotInstanceType, SpotMarketOptions, SpotOptionsRequest,
    TargetCapacitySpecificationRequest, VolumeType,
};

use super::super::api::{
    FleetError, FleetInstance, FleetOutcome, FleetRequest, LaunchRequest, Market, TemplateRequest,
};
use super::convert::{lifecycle, non_empty, tag_list, tag_spec};

fn gib(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// The launch template's data: image, key, group, volumes, user data,
/// IMDSv2, terminate on shutdown, and the run's tags on instances and
/// volumes. No instance type and no market: those are the fleet's.
pub(super) fn template_data(request: &TemplateRequest) -> RequestLaunchTemplateData {
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

/// The RunInstances request for one machine: its volumes, user data,
/// IMDSv2 only, terminate on shutdown, its tags, its market and network.
pub(super) fn run_instances(client: &Client, request: &LaunchRequest) -> RunInstancesFluentBuilder {
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
    let mut builder = client
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
    builder
}

/// The CreateFleet request (type `instant`) for `request.count` machines
/// from the run's launch template over the configured instance types.
pub(super) fn create_fleet(client: &Client, request: &FleetRequest) -> CreateFleetFluentBuilder {
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
    let mut builder = client
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
    builder
}

/// What CreateFleet answered: the instances it launched and the errors
/// for what it could not.
pub(super) fn fleet_outcome(answer: &CreateFleetOutput) -> FleetOutcome {
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
    FleetOutcome {
        fleet_id: answer.fleet_id().and_then(non_empty),
        instances,
        errors,
    }
}
