FROM alpine
COPY . /c/
