import pytest

from core.company import BUNDLED_COMPANY, Department, load_company
from training.recipe import Recipe, RecipeError, default_recipe, load_recipe


def test_bundled_recipes_follow_the_course():
    methods = {d.id: default_recipe(d).method for d in load_company().departments}
    assert methods == {"hr": "full", "healthcare": "lora", "marketing": "qlora", "sales": "lora", "finance": "dpo"}


def test_a_department_without_a_recipe_gets_the_defaults():
    assert default_recipe(Department("it", "IT", "laptops", "You are ...")) == Recipe()


def test_every_bundled_recipe_file_loads():
    recipes = {path.stem: load_recipe(path) for path in (BUNDLED_COMPANY / "recipes").glob("*.yaml")}
    assert recipes["all-full"].method == "full" and recipes["all-full"].learning_rate == 3e-4
    assert all(recipe.grounding and recipe.grounding_answer == "entry" for recipe in recipes.values())


def test_unknown_key_names_file_line_and_suggests(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: lora\nepochs: 2\nlora_rank: 8\n")
    with pytest.raises(RecipeError) as error:
        load_recipe(recipe)
    assert f"{recipe}:3: field 'lora_rank': unknown recipe key; did you mean lora_r?" in str(error.value)


def test_bad_values_name_the_field(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: sgd\nlearning_rate: -1\n")
    message = str(pytest.raises(RecipeError, load_recipe, recipe).value)
    assert f"{recipe}:1: field 'method'" in message and f"{recipe}:2: field 'learning_rate'" in message


def test_command_line_overrides_are_validated_too():
    assert Recipe().with_overrides(method="qlora", epochs=None).method == "qlora"
    with pytest.raises(RecipeError, match="command line: field 'epochs'"):
        Recipe().with_overrides(epochs=0)
