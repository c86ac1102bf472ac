FROM alpine
RUN --mount=type=cache,target=/root/.cache true
RUN --network=none true
