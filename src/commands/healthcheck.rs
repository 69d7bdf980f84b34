//! `healthcheck`: GET `/-/healthy` (or any URL) of a running agent, for a container
//! HEALTHCHECK without curl.

/// `healthcheck`: GET the URL; healthy on a 2xx answer within 5 s.
pub async fn healthcheck(url: &str, insecure: bool) -> bool {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .tls_danger_accept_invalid_certs(insecure)
        .build();
    let result = match client {
        Ok(client) => client.get(url).send().await,
        Err(error) => {
            eprintln!("healthcheck: {error}");
            return false;
        }
    };
    match result {
        Ok(response) if response.status().is_success() => true,
        Ok(response) => {
            eprintln!("healthcheck: {url} answered {}", response.status());
            false
        }
        Err(error) => {
            eprintln!("healthcheck: {url}: {error}");
            false
        }
    }
}
