FROM alpine

# comment between
RUN apk add --no-cache \
      curl \
    # comment inside a continuation
      jq
WORKDIR /app
LABEL a=b \
      c="d e"
