# test-build-args: TAG=3.19 UNUSED=1 HTTP_PROXY=http://p
ARG BASE=alpine
ARG TAG=latest
ARG REF=${BASE}:${TAG}
FROM ${REF} AS first
ARG TAG
FROM --platform=$BUILDPLATFORM ${BASE}:${TARGETARCH}
