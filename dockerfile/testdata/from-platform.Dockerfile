FROM --platform=linux/arm64 alpine
RUN true
