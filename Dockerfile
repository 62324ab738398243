# trtc-usage: a small, non-root image whose entrypoint is the job.
# No Docker engine runs in this project's CI; the build stage runs exactly
# the command .ci/run runs (`cargo build --release --locked`), and hadolint
# lints this file there.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY tests ./tests
RUN cargo build --release --locked \
    && cp target/release/trtc-usage /trtc-usage

FROM debian:bookworm-slim
ARG VERSION=0.9.0
LABEL org.opencontainers.image.title="trtc-usage" \
      org.opencontainers.image.description="Tencent Cloud TRTC per-room usage to Hive-partitioned Parquet" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# CA certificates for HTTPS to Tencent Cloud and S3; nothing else.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin trtc
COPY --from=build /trtc-usage /usr/local/bin/trtc-usage
USER 10001:10001
# Local destinations default to a volume; logs are JSON for log collectors.
ENV TRTC_DEST=/data \
    TRTC_LOG_FORMAT=json
WORKDIR /data
ENTRYPOINT ["trtc-usage"]
CMD ["export"]
