FROM alpine AS unused
RUN --security=insecure true
FROM --platform=linux/arm64 alpine AS unusedarm
FROM alpine
ADD https://github.com/moby/buildkit.git /src
RUN --security=insecure true
RUN --network=host true
