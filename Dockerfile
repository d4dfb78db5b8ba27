# The tuner image: workers, the one-shot launcher and the dashboard all run it.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY tuner ./tuner
COPY dashboard ./dashboard
COPY studies ./studies
RUN pip install ".[postgres,mysql]" -c constraints.txt && useradd --create-home tuner  # the versions CI tested
USER tuner
ENTRYPOINT ["tuner"]
CMD ["--help"]
