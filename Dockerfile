FROM python:3.11-slim-bookworm
# bubblewrap: model code runs in it (models_app/bpo/sandbox.py).
RUN apt-get update && apt-get install -y --no-install-recommends gcc g++ make libc6-dev bubblewrap \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home app
WORKDIR /app
COPY pyproject.toml README.md ./
COPY rebuild_site rebuild_site
COPY models_app models_app
COPY nsg_app nsg_app
COPY analysis_app analysis_app
RUN pip install --no-cache-dir . gunicorn
COPY . .
RUN DEBUG=1 VAR_DIR=/tmp/build python manage.py collectstatic --no-input \
    && chown -R app /app
USER app
EXPOSE 8000
CMD ["gunicorn", "rebuild_site.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3"]
