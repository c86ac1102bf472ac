# test-target: Build
FROM alpine AS build
RUN true
FROM alpine AS final
RUN false
