# pgflare in a container: build with the locked dependencies and the release
# profile users get, then a slim runtime with CA certificates (TLS to
# Supabase and Cloudflare) running as a non-root user.
#
#   docker build --build-arg PGFLARE_COMMIT="$(git rev-parse --short=12 HEAD)" -t pgflare .
#   docker run --rm -e DATABASE_URL -e CLOUDFLARE_API_TOKEN -e CLOUDFLARE_ACCOUNT_ID \
#     -v "$PWD:/work" pgflare sync --once --target api --wrangler wrangler.jsonc --d1-binding DB
#
# The work folder (/work, the image's working directory) holds pgflare.toml,
# wrangler.jsonc and what commands write (reports, archives, state). Run the
# container with --user "$(id -u):$(id -g)" to write files owned by you.
# scripts/docker.sh builds the image and runs it against the local stack.

# Rust's official image; 1.89 is the crate's rust-version (Cargo.toml).
FROM rust:1.89-slim-bookworm AS build
WORKDIR /src
# .git is not copied (.dockerignore): the commit comes in as a build argument.
ARG PGFLARE_COMMIT=""
ENV PGFLARE_COMMIT=${PGFLARE_COMMIT}
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
# The seed generator's schema is compiled into the library (include_str!).
COPY fixtures/schema.sql ./fixtures/schema.sql
RUN cargo build --locked --release --bin pgflare \
    && cp target/release/pgflare /usr/local/bin/pgflare

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home --home-dir /home/pgflare pgflare \
    && mkdir -p /work && chown pgflare:pgflare /work
COPY --from=build /usr/local/bin/pgflare /usr/local/bin/pgflare
USER pgflare
WORKDIR /work
# SIGTERM (docker stop) ends `sync --every` and `sync --follow` cleanly:
# the ranges being written are finished and recorded, then exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["pgflare"]
CMD ["--help"]
