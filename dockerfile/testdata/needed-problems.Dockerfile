FROM alpine AS unused
RUN --network=host true
FROM --platform=linux/arm64 alpine AS unusedarm
FROM alpine
RUN --network=host true
RUN --security=insecure true
