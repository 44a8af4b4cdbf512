//! What the sandbox offers: its regions, droplet sizes and base images, with DigitalOcean's
//! slugs so a spec written for the real cloud works unchanged.
//!
//! Every base image boots the same droplet image (Debian 12 with sshd, Docker Engine, nginx,
//! git and curl; see `droplet_recipe.sh`): the sandbox has one root filesystem, and the slugs
//! only choose which DigitalOcean image a droplet reports. A droplet's size limits its
//! container: as many of the machine's CPUs as the size has vcpus (all of them when the size
//! has more), and the size's memory (see `backend.rs`, [`Docker::limit`]).
//!
//! [`Docker::limit`]: crate::sandbox::backend::Docker::limit

use crate::cloud::{Image, Region, Size};

/// Regions, as `(slug, name)`.
const REGIONS: [(&str, &str); 9] = [
    ("nyc1", "New York 1"),
    ("nyc3", "New York 3"),
    ("sfo3", "San Francisco 3"),
    ("ams3", "Amsterdam 3"),
    ("fra1", "Frankfurt 1"),
    ("lon1", "London 1"),
    ("sgp1", "Singapore 1"),
    ("tor1", "Toronto 1"),
    ("blr1", "Bangalore 1"),
];

/// The region a droplet lands in when its create request names none.
pub const DEFAULT_REGION: &str = "nyc3";

/// Sizes, as `(slug, memory MiB, vcpus, disk GB, transfer TB, price a month)`.
const SIZES: [(&str, u64, u64, u64, f64, f64); 8] = [
    ("s-1vcpu-512mb-10gb", 512, 1, 10, 0.5, 4.0),
    ("s-1vcpu-1gb", 1024, 1, 25, 1.0, 6.0),
    ("s-1vcpu-2gb", 2048, 1, 50, 2.0, 12.0),
    ("s-2vcpu-2gb", 2048, 2, 60, 3.0, 18.0),
    ("s-2vcpu-4gb", 4096, 2, 80, 4.0, 24.0),
    ("s-4vcpu-8gb", 8192, 4, 160, 5.0, 48.0),
    ("s-8vcpu-16gb", 16384, 8, 320, 6.0, 96.0),
    ("c-2", 4096, 2, 25, 4.0, 42.0),
];

/// Base images, as `(id, slug, distribution, name)`.
const IMAGES: [(u64, &str, &str, &str); 4] = [
    (160_000_012, "debian-12-x64", "Debian", "12 x64"),
    (160_000_022, "ubuntu-22-04-x64", "Ubuntu", "22.04 (LTS) x64"),
    (160_000_024, "ubuntu-24-04-x64", "Ubuntu", "24.04 (LTS) x64"),
    (160_000_025, "ubuntu-25-04-x64", "Ubuntu", "25.04 x64"),
];

/// When the base images were "published", for their `created_at`.
const IMAGES_CREATED_AT: &str = "2024-01-01T00:00:00Z";

const REGION_FEATURES: [&str; 4] = ["backups", "ipv6", "metadata", "storage"];

pub fn regions() -> Vec<Region> {
    REGIONS
        .iter()
        .map(|(slug, name)| region_of(slug, name))
        .collect()
}

pub fn region(slug: &str) -> Option<Region> {
    REGIONS
        .iter()
        .find(|(s, _)| *s == slug)
        .map(|(slug, name)| region_of(slug, name))
}

fn region_of(slug: &str, name: &str) -> Region {
    Region {
        name: name.to_owned(),
        slug: slug.to_owned(),
        features: REGION_FEATURES.iter().map(|f| f.to_string()).collect(),
        available: true,
        sizes: SIZES.iter().map(|s| s.0.to_owned()).collect(),
    }
}

fn region_slugs() -> Vec<String> {
    REGIONS.iter().map(|(slug, _)| slug.to_string()).collect()
}

pub fn sizes() -> Vec<Size> {
    SIZES.iter().map(size_of).collect()
}

pub fn size(slug: &str) -> Option<Size> {
    SIZES.iter().find(|s| s.0 == slug).map(size_of)
}

fn size_of(
    &(slug, memory, vcpus, disk, transfer, price): &(&str, u64, u64, u64, f64, f64),
) -> Size {
    Size {
        slug: slug.to_owned(),
        memory,
        vcpus,
        disk,
        transfer,
        price_monthly: price,
        price_hourly: (price / 672.0 * 100_000.0).round() / 100_000.0,
        regions: region_slugs(),
        available: true,
        description: "Basic".to_owned(),
        disk_info: Vec::new(),
    }
}

/// Every base image (DigitalOcean's distribution images).
pub fn base_images() -> Vec<Image> {
    IMAGES
        .iter()
        .filter_map(|(id, ..)| base_image(Some(*id), None))
        .collect()
}

/// A base image by numeric id or slug.
pub fn base_image(id: Option<u64>, slug: Option<&str>) -> Option<Image> {
    IMAGES
        .iter()
        .find(|(i, s, _, _)| Some(*i) == id || Some(*s) == slug)
        .map(|&(id, slug, distribution, name)| Image {
            id,
            name: Some(name.to_owned()),
            kind: Some("base".to_owned()),
            distribution: Some(distribution.to_owned()),
            slug: Some(slug.to_owned()),
            public: Some(true),
            regions: region_slugs(),
            created_at: Some(IMAGES_CREATED_AT.to_owned()),
            min_disk_size: Some(10),
            size_gigabytes: Some(0.52),
            description: Some(format!(
                "{distribution} {name}: boots the sandbox's Debian 12 droplet image"
            )),
            tags: Vec::new(),
            status: Some("available".to_owned()),
            error_message: Some(String::new()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_find_what_the_lists_hold() {
        for size in sizes() {
            assert_eq!(super::size(&size.slug).unwrap(), size);
        }
        for region in regions() {
            assert_eq!(super::region(&region.slug).unwrap(), region);
        }
        assert!(region(DEFAULT_REGION).is_some());
        let by_slug = base_image(None, Some("debian-12-x64")).unwrap();
        assert_eq!(base_image(Some(by_slug.id), None).unwrap(), by_slug);
        assert!(base_image(None, Some("windows-11")).is_none());
    }
}
