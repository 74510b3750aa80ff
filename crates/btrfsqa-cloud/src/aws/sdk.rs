//! [`Ec2Api`] over `aws_sdk_ec2::Client`: builds requests, reads answers into
//! the plain types of `api.rs`, and sorts errors. No logic beyond that.
//!
//! The conversions both ways (and the sorting of errors) are in
//! `sdk/convert.rs`, the requests that launch instances in `sdk/launch.rs`;
//! this file holds one method per EC2 call.

mod convert;
mod launch;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{InstanceType, IpPermission, IpRange, Ipv6Range, ResourceType};
use chrono::Utc;

use super::api::{
    Ec2Api, Filter, FleetOutcome, FleetRequest, ImageInfo, InstanceInfo, LaunchRequest,
    ResourceInfo, SpotRequestInfo, TemplateRequest,
};
use super::error::Ec2Error;
use convert::{
    all_pages, filters, instance_info, missing, non_empty, sdk_error, tag_list, tag_spec, tags,
};
use launch::template_data;

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
        let answer = launch::run_instances(&self.client, request)
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
        let answer = launch::create_fleet(&self.client, request)
            .send()
            .await
            .map_err(|error| sdk_error(ACTION, error))?;
        Ok(launch::fleet_outcome(&answer))
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
